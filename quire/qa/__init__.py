"""QA of submitted work: the automated checks, near-duplicate detection, late fines and the report.

Plain domain code (no Prefect, no FastAPI): each public function is one named step that a Prefect
task in `tasks/` can wrap with retries and caching. Modules are imported directly
(`from quire.qa import checks`) so that importing the package stays cheap.
"""
