"""The exception types beamflow raises, and whether the runtime should retry them.

Every handler failure is sorted into one of two families. ``PermanentError``: retrying cannot help, so the
message is dead-lettered at once. ``TransientError``: the world may change (a disk frees up, a server comes
back), so the message is redelivered with back-off and dead-lettered only when deliveries run out. Any other
exception is a bug or something unforeseen and is treated as transient, so nothing is dropped on a surprise.
Messages are written for the operator who reads the dead letter: say what happened and what to do.
"""

from __future__ import annotations


class BeamflowError(Exception):
    """Base of every error beamflow raises on purpose."""


class PermanentError(BeamflowError):
    """Retrying will not help; the message goes to the dead letters at once."""


class TransientError(BeamflowError):
    """May succeed later; the message is redelivered with back-off."""


class ConfigError(BeamflowError):
    """The configuration is invalid; the message lists every problem with the field that holds it."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid configuration:\n" + "\n".join(f"  - {p}" for p in problems))


class InvalidEvent(PermanentError):
    """A message that does not validate against its event model (or has an unknown schema version)."""


class PathOutsideRoot(PermanentError):
    """A path in an event resolves outside its endpoint's root (``..``, absolute, or an escaping symlink)."""


class UnknownEndpoint(PermanentError):
    """An event names an endpoint that the configuration does not define."""


class UnknownBeamline(PermanentError):
    """An event names a beamline that the configuration does not define."""


class UnsupportedEndpoint(PermanentError):
    """The endpoint kind has no controller for the requested operation in this build."""


class SourceMissing(PermanentError):
    """A file named by a scan is not at the source; there is nothing to copy."""


class SourceChanged(TransientError):
    """The source changed while it was being copied; the copy was discarded and will be tried again."""


class DestinationUnwritable(TransientError):
    """The destination refused the write (permission denied, no space left, read-only filesystem)."""


class CredentialsRejected(PermanentError):
    """A remote service refused beamflow's credentials (a wrong secret, a revoked client, a missing consent)."""


class ServiceUnreachable(TransientError):
    """A remote service did not answer, or answered with a server error; retried."""


class TransferFailed(PermanentError):
    """A transfer service ran the copy and it failed for a reason retrying will not fix (permissions)."""


class TransferTimedOut(TransientError):
    """A transfer did not finish within its deadline (or sat inactive too long); it was cancelled."""


class VerificationFailed(TransientError):
    """The copy at the destination does not match the source's size or checksum; it was not kept."""


class LedgerBehind(TransientError):
    """The ledger has not yet recorded what a hold is about (its service lags or is down); retried."""


class PruneRefused(PermanentError):
    """The safety rule did not hold; nothing was deleted. The message says which part failed and why."""


class HoldNotFound(BeamflowError):
    """An operator named a retention hold that the ledger does not know."""


class ScanNotFound(BeamflowError):
    """An operator named a scan id that the ledger does not know."""


class NatsUnavailable(TransientError):
    """The NATS server cannot be reached."""


class EmbeddedServerError(BeamflowError):
    """The embedded nats-server could not be started or did not become ready."""


class DeadLetterNotFound(BeamflowError):
    """An operator named a dead-letter sequence that the DEADLETTERS stream does not hold (any more)."""


class DeadLetterUnreadable(BeamflowError):
    """A message in the DEADLETTERS stream is not a dead letter this version of beamflow can read."""


class ReplayImpossible(BeamflowError):
    """A dead letter's original cannot be published again; nothing was published and the dead letter is kept."""


class OriginalNotCaptured(ReplayImpossible):
    """The dead letter was written without its original message (it was gone from its stream by then)."""


class OriginalSubjectUnbound(ReplayImpossible):
    """No stream stores the original subject any more, so a replay would reach nobody."""
