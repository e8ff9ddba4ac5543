"""Exceptions. Each message should tell the user what to do next."""


class LwfmError(Exception):
    """Base of every error lwfm raises on purpose; the CLI prints it and exits 1."""


class InvalidInput(LwfmError, ValueError):
    """A malformed definition, value or argument (also a ValueError, as Python expects)."""


class NotFound(LwfmError):
    """An unknown job, workflow, data object, site or trigger id."""


class ConfigError(LwfmError):
    """The lwfm home or a site's configuration is wrong."""


class SiteError(LwfmError):
    """A site could not do what was asked (and says why)."""


class NotSupported(SiteError):
    """A pillar operation this site cannot perform (e.g. Spin on a laptop)."""


class AuthError(SiteError):
    """Login failed or credentials are missing; never carries the secret itself."""


class ChecksumMismatch(LwfmError):
    """A transferred file's sha256 differs between its two ends."""


class QueryError(LwfmError):
    """A SPARQL query is malformed or not allowed (updates are refused)."""


class BundleError(LwfmError):
    """A bundle is malformed, hostile, or conflicts with the local store."""


class StoreError(LwfmError):
    """The store cannot be opened, read or written (disk full, locked, read-only, a schema
    from a newer lwfm); the message names the store and the cause."""


class JobFailed(LwfmError):
    """A job a future waited for did not complete (it failed, was cancelled, or will
    never run); ``job`` is its final record (None if it never ran), ``log_tail`` the end
    of its output, to see why without another call."""

    def __init__(self, message: str, job: object = None, log_tail: str = ""):
        super().__init__(message + (f"\n--- last lines of its log ---\n{log_tail}"
                                    if log_tail else ""))
        self.job = job
        self.log_tail = log_tail


class PublishError(LwfmError):
    """A dataset cannot be published as asked (a bad license id or ORCID, a file that no
    longer matches its recorded checksum, a crate failing its profile checks); nothing was
    written or deposited."""


class DepositError(LwfmError):
    """A repository refused or broke off a deposit; the message says what to do (rerunning
    the same publish resumes it), and no record was published half-way."""
