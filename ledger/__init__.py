"""Quire's double-entry ledger: immutable, multi-currency, enforced by the code and the database.

Invariants (stated first, then enforced — see ledger/README.md):

1. Every transfer has at least two entries and balances per currency (sum of amounts = 0).
2. Entries and transfers are append-only: corrections are reversal transfers, never edits.
3. Amounts are integers in the currency's minor unit; entries carry their account's currency.
4. An account's maintained balance equals the sum of its entries.
5. An account flagged `no_negative` never has a negative balance on its normal side.
6. An idempotency key names one transfer per tenant: replaying it with the same content returns
   that transfer; with different content it is refused and nothing is written.
"""
