"""The kinds of failure the pipeline tells apart.

Anything that is not a PermanentError is treated as transient: the stage retries it with backoff,
and so does Airflow. A PermanentError (a missing file, a corrupt or mismatched one, a setting or
input the package cannot use) cannot get better by waiting, so the DAG fails the task at once
without spending its retries, and the command line prints its message on one line.
"""


class PermanentError(Exception):
    """Retrying cannot help: the input itself is wrong or missing."""


class SettingError(PermanentError, ValueError):
    """A setting (environment variable) or an input field holds a value the package refuses; the
    message names the setting or field, and never shows a password."""


class ShardFileError(PermanentError):
    """A source file of a shard is missing, corrupt or does not match the other files of the shard."""

    def __init__(self, shard: int, file: str, problem: str):
        self.shard, self.file, self.problem = shard, file, problem
        super().__init__(f"shard {shard}: {file}: {problem}")


class DiskSpaceError(RuntimeError):
    """Not enough free disk for a download or a load: transient, since another shard's load or the
    operator may free space before the retry."""
