"""`python -m align_trainer.launch <torchrun arguments>`: torchrun, with exit codes the operator understands.

Plain torchrun exits 1 whenever a worker fails, whatever the worker's own code was. The Job's podFailurePolicy
fails fast on the trainer's permanent codes (10-19: bad config, bad data, divergence, ...) and retries the
rest, so a rank's DataError (11) must stay 11. This wrapper runs torchrun unchanged and exits with:

* a permanent code when any rank exited with one (the root cause; the others failed after it),
* else the code of the first rank that failed, when it exited with a code,
* else TRANSIENT (1): a rank killed by a signal (kill -9, OOM killer) or torchrun itself interrupted
  (SIGTERM to the pod: the ranks received it too, checkpointed and stopped; a restart resumes).
"""

from __future__ import annotations

import logging
import sys
from typing import Mapping, Sequence

from align_api.constants import ExitCode

log = logging.getLogger("align_trainer.launch")


def exit_code(failures: Mapping[int, tuple[int, float]]) -> int:
    """The pod's exit code from {rank: (exit code, time of failure)} (negative codes: killed by a signal)."""
    if not failures:
        return ExitCode.OK
    permanent = [(at, code) for code, at in failures.values() if code in ExitCode.PERMANENT]
    if permanent:
        return min(permanent)[1]
    _, first = min((at, code) for code, at in failures.values())
    return first if first > 0 else ExitCode.TRANSIENT


def main(argv: Sequence[str] | None = None) -> int:
    from torch.distributed.elastic.multiprocessing import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        run(args)
    except ChildFailedError as exc:
        code = exit_code({r: (f.exitcode, f.timestamp) for r, f in exc.failures.items()})
        rank, first = exc.get_first_failure()
        log.error("rank %d failed first (exit code %s); the pod exits with %d", rank, first.exitcode, code)
        return code
    except SignalException as exc:
        log.warning("torchrun received %s: the ranks were told to checkpoint and stop", exc.sigval)
        return ExitCode.TRANSIENT
    return ExitCode.OK


if __name__ == "__main__":
    sys.exit(main())
