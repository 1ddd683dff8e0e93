"""`make soak`: the replicated races and the fault tests, again and again under CPU load, until
the time is up; every trial's log is replayed through the independent checker
(tests/reference_rules.py), whatever the test itself checked.

    python -m tests.soak [--minutes 30] [--hogs 2] [--keep tests/artifacts/soak]

A trial is one test in a pytest process of its own, with its own race seed
(AGENTLEDGER_RACE_SEED, see tests/replicas.py); `tests/soak_logs.py` saves each stream the test
wrote. A trial fails when the test fails or the replay finds a broken rule; a failing trial keeps
its seed, its pytest output and its logs under --keep, a passing one is removed. The hogs are
busy loops in processes of their own, stopped (by pid) when the soak ends. Not part of
`make test`: pytest collects only test_*.py files.
"""

from __future__ import annotations

import argparse
import glob
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import msgspec

from tests.reference_rules import Rules, replay
from tests.soak_logs import DIRECTORY, Saved

SUITES = ("tests/test_cluster.py", "tests/test_faults*.py", "tests/test_outage.py", "tests/test_delegation_race.py",
          "tests/test_race.py",
          "tests/test_session_id_race.py")
TRIAL_TIMEOUT = 900.0  # seconds; a trial past it is killed and counted as failed


@dataclass
class Outcome:
    test: str
    seed: int
    passed: bool
    violations: list[str]
    events: int
    seconds: float


def collect(python: str) -> list[str]:
    files = sorted({f for pattern in SUITES for f in glob.glob(pattern)})
    listing = subprocess.run([python, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *files],
                             capture_output=True, text=True, check=True).stdout
    return [line.strip() for line in listing.splitlines() if "::" in line]


def replay_logs(directory: Path) -> tuple[list[str], int]:
    """Every saved stream through a fresh reference checker: the rules broken, and events replayed."""
    violations: list[str] = []
    events = 0
    for log in sorted(directory.glob("*.jsonl")):
        saved = [msgspec.json.decode(line, type=Saved) for line in log.read_bytes().splitlines() if line]
        events += len(saved)
        violations += [f"{log.stem}: {v}" for v in replay(Rules(), [s.data.encode() for s in saved])]
    return violations, events


def run_trial(python: str, test: str, seed: int, directory: Path) -> Outcome:
    directory.mkdir(parents=True)
    (directory / "seed").write_text(f"{seed}\n{test}\n")
    env = {**os.environ, "AGENTLEDGER_RACE_SEED": str(seed), DIRECTORY: str(directory / "logs")}
    started = time.monotonic()
    with open(directory / "pytest.log", "wb") as out:
        proc = subprocess.Popen([python, "-m", "pytest", test, "-q", "-x", "-s", "-p", "no:cacheprovider",
                                 "-p", "tests.soak_logs"], stdout=out, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
        try:
            passed = proc.wait(TRIAL_TIMEOUT) == 0
        except subprocess.TimeoutExpired:
            interrupt(proc)
            out.write(f"\nsoak: interrupted after {TRIAL_TIMEOUT:g} s\n".encode())
            passed = False
        except BaseException:  # Ctrl-C: the trial runs in a session of its own, which the terminal does not signal
            interrupt(proc)
            raise
    logs = directory / "logs"
    violations, events = replay_logs(logs) if logs.is_dir() else ([], 0)
    return Outcome(test, seed, passed, violations, events, time.monotonic() - started)


def interrupt(proc: subprocess.Popen[bytes]) -> None:
    """Stop a trial as Ctrl-C would, so pytest tears its fixtures down (the test's nats-servers run
    in sessions of their own and would outlive a kill); kill its process group if that hangs."""
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def stop(signum: int, frame: object) -> None:
    """SIGTERM ends the soak as Ctrl-C does: the running trial is interrupted and the hogs stopped."""
    raise KeyboardInterrupt


def hog() -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="start no trial after this long (default 30)")
    parser.add_argument("--hogs", type=int, default=2, help="CPU busy-loop processes alongside (default 2)")
    parser.add_argument("--keep", type=Path, default=Path("tests/artifacts/soak"),
                        help="where failing trials are kept (default tests/artifacts/soak)")
    parser.add_argument("--seed", type=int, default=None, help="seed of the trials' seeds (default: random)")
    parser.add_argument("-k", dest="only", default=None, help="only tests whose id contains this")
    args = parser.parse_args()
    python = sys.executable
    tests = [t for t in collect(python) if args.only is None or args.only in t]
    if not tests:
        print("soak: no tests collected", file=sys.stderr)
        return 2
    master = args.seed if args.seed is not None else random.randrange(2**32)
    rng = random.Random(master)
    run_dir = args.keep / time.strftime("%Y%m%d-%H%M%S")
    signal.signal(signal.SIGTERM, stop)
    hogs = [hog() for _ in range(args.hogs)]
    print(f"soak: {len(tests)} tests in turn for {args.minutes:g} min, {args.hogs} CPU hogs, seed {master}; "
          f"failing trials kept in {run_dir}", flush=True)
    outcomes: list[Outcome] = []
    loads: list[float] = []
    started = time.monotonic()
    interrupted = False
    try:
        while time.monotonic() - started < args.minutes * 60:
            test = tests[len(outcomes) % len(tests)]
            seed = rng.randrange(2**31)
            directory = run_dir / f"trial{len(outcomes) + 1:04d}"
            try:
                outcome = run_trial(python, test, seed, directory)
            except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the trial was interrupted, not failed
                shutil.rmtree(directory, ignore_errors=True)
                interrupted = True
                break
            outcomes.append(outcome)
            loads.append(os.getloadavg()[0])
            failed = not outcome.passed or outcome.violations
            print(f"trial {len(outcomes)}: {test} seed {seed}: {'passed' if outcome.passed else 'FAILED'}, "
                  f"{len(outcome.violations)} violations in {outcome.events} events replayed, "
                  f"{outcome.seconds:.0f} s, load {loads[-1]:.1f}", flush=True)
            for violation in outcome.violations[:5]:
                print(f"    {violation}", flush=True)
            if failed:
                (directory / "violations").write_text("\n".join(outcome.violations) + "\n")
                print(f"    kept: {directory}", flush=True)
            else:
                shutil.rmtree(directory)
    finally:
        for process in hogs:
            process.kill()
            process.wait()
    minutes = (time.monotonic() - started) / 60
    failed = [o for o in outcomes if not o.passed]
    violations = sum(len(o.violations) for o in outcomes)
    events = sum(o.events for o in outcomes)
    per_test = Counter(o.test.split("::")[0] for o in outcomes)
    print(f"soak{' (interrupted)' if interrupted else ''}: {len(outcomes)} trials in {minutes:.1f} min "
          f"under {args.hogs} CPU hogs "
          f"(mean 1-min load average {sum(loads) / max(len(loads), 1):.1f} on {os.cpu_count()} cores): "
          f"{len(failed)} failed, {violations} violations in {events} events replayed by tests/reference_rules.py")
    for name, count in sorted(per_test.items()):
        print(f"    {count:4d}  {name}")
    if run_dir.exists() and not any(run_dir.iterdir()):
        run_dir.rmdir()
    return 1 if failed or violations else 130 if interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
