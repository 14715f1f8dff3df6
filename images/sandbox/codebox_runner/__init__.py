"""codebox's in-container runner, the PID 1 of every sandbox container (started by
/opt/codebox/runner.py). One idea per module:

    protocol      the line protocol with the host: vocabulary, framing, MACs
    constants     named sizes, caps and bounds
    privileges    the code's uid, dropping to it, the signals the runner ignores
    main          the runner's life: ready, one job, result, outputs, done
    supervisor    the code's process forked ahead, its clock, its pipes, its end
    child         the code's process itself: a notebook cell run as the user's program
    ending        how a run ended: status, exit code and error
    outputs       capped stdout/stderr, live output, the output directory as a tar
    session_io    a session's restore and save, and the reports about them
    packages      missing packages asked of the host while the code is stopped
    user_files    the user's files linked where models look for them
    accounting    CPU time and OOM kills, as the kernel counted them
    warmup        the data stack imported before the job arrives
"""
