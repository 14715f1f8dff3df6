"""The runner's named numbers: sizes, caps and bounds, each with the reason it is what it
is. Pure: nothing here is read from the environment (the code's uid is in privileges)."""

# Bytes asked of one os.read on any pipe (the code's output, its reports, the job, the
# host's answers): a Linux pipe holds 64 KiB by default, so one read empties a full one.
READ_CHUNK = 65536
# The code's process closes every descriptor below this one that it must not keep: above
# any it can have inherited (the container's open-file limit is lower).
CLOSE_FDS_BELOW = 65536
# The code's error report (type and message, a few KB) is read until it holds this much:
# the pipe is the code's to flood, the report is bounded again when it is parsed.
MAX_ERROR_REPORT_BYTES = 65536
# A package request buffered this long without a newline is no module name: dropped, and
# the code is answered with an error.
MAX_PACKAGE_REQUEST_BYTES = 65536
# A session phase report buffered this long without a newline is dropped (a real one lists
# at most MAX_LISTED_NAMES names per list).
MAX_PHASE_REPORT_BYTES = 1 << 20
# The one job line from the host (the code, its files, its limits); the rest of a longer
# one is never read, so the job is unreadable.
MAX_JOB_LINE_BYTES = 16 * 1024 * 1024
# A line the host may send before the job: a session's snapshot to restore ahead, while
# the runner waits (its JSON follows). The job itself is JSON, never starting with it.
PREPARE_PREFIX = b"prepare "
# A prepared restore's own duration, as the code's process reports it, is believed up to
# this (it is the code's pipe): longer than any restore's budget.
MAX_AHEAD_MS = 3600 * 1000.0
# The host's one-line answer to `missing` (package directories, or why there are none).
MAX_HOST_ANSWER_BYTES = 1024 * 1024
# The session snapshot is hashed and streamed in pieces of this size: it may be hundreds
# of MB, and is never held whole.
SNAPSHOT_CHUNK_BYTES = 1 << 20
# The signal wake-up pipe is emptied this much at a time: its bytes only wake select.
WAKE_READ_BYTES = 4096

# After the code's process exits, background processes may still hold its pipes open:
# they are drained this long, not until they close.
DRAIN_AFTER_EXIT_S = 0.2
# kill_everything_else signals and reaps up to this many rounds, pausing between rounds
# that reaped nothing, so a forking process cannot outrun it.
KILL_ROUNDS = 50
KILL_ROUND_PAUSE_S = 0.002

# Exit status of the code's process when it cannot drop the runner's privileges: it never
# runs code with them.
EXIT_PRIVILEGE_DROP_FAILED = 112
# prctl(2) option: whether a process's memory can be read or ptraced by its uid.
PR_SET_DUMPABLE = 4

# At most this many package requests per run, whatever the code writes to its pipe.
MAX_INSTALL_REQUESTS = 10
# Names listed per report (kept, not kept, restored...): the rest are counted.
MAX_LISTED_NAMES = 200
# One listed name, and the reason given for one that was not kept.
MAX_LISTED_NAME_CHARS = 100
MAX_LISTED_REASON_CHARS = 200
# A count in a report beyond this is no count (the code's process made it up).
MAX_REPORTED_COUNT = 1 << 40
# An error reported on the phase pipe; and a save's own exception text.
MAX_PHASE_ERROR_CHARS = 500
MAX_SAVE_ERROR_CHARS = 200
# The code's exception as reported: its dotted type name and its message.
MAX_EXCEPTION_NAME_CHARS = 200
MAX_EXCEPTION_MESSAGE_CHARS = 2000
# The host's reason for a package it could not provide, inside the code's ImportError.
MAX_INSTALL_ERROR_CHARS = 1500
# Output flags listed per kind; more of a kind are one flag with a count (10,000 files
# over the cap are one line, not 10,000).
MAX_FLAGS_PER_KIND = 20

# A run's picture outputs measured for the model (codebox_runner.pictures): at most this
# many (a model is shown a few), within this many seconds of the measuring process's
# life, its report read up to this many bytes (a measure is one line of ~80 bytes).
MAX_MEASURED_PICTURES = 8
MEASURE_PICTURES_S = 2.0
MAX_PICTURE_REPORT_BYTES = 16384
# A picture with a longer side is not decoded to be measured: the host sends a run's
# figures as they are only up to this side (src/app/pictures.rs FIGURE_SIDE), and a
# larger one goes through its picture run to be downscaled anyway.
MEASURED_MAX_SIDE = 1024

# Live output bounds when the job names none (the host always does).
DEFAULT_LIVE_EVENT_CHARS = 4096
DEFAULT_LIVE_INTERVAL_MS = 100
