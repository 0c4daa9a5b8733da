"""Run a module under cProfile with a CPU-time clock: `python bench/profiled.py OUT -m mod args`.

`python -m cProfile` times with the wall clock, so in an async server every await that waits on
the network or on the other busy core shows up as cost; process time shows where the CPU goes.
"""

from __future__ import annotations

import cProfile
import runpy
import sys
import time


def main() -> None:
    out, flag, module, *args = sys.argv[1:]
    if flag != "-m":
        raise SystemExit("usage: profiled.py OUT -m module [args...]")
    sys.argv = [module, *args]
    profiler = cProfile.Profile(time.process_time)
    profiler.enable()
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        profiler.disable()
        profiler.dump_stats(out)


if __name__ == "__main__":
    main()
