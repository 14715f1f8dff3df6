//! Notebook semantics through `codebox run` against the real Docker engine: the last
//! expression and display() shown, figures from plt.show() and open figures as PNG outputs,
//! and variables that persist between runs of one user's session (and only theirs).

mod common;

use std::path::Path;

use common::{Run, assert_container_gone, codebox, run_code, run_with};

fn run_in_session(data: &Path, user: &str, session: &str, code: &str) -> Run {
    run_with(codebox(data), &["--user", user, "--session", session], code)
}

fn session_notes(run: &Run) -> serde_json::Value {
    run.json["session"].clone()
}

#[test]
fn the_issue_example_returns_the_table_and_the_figure() {
    let data = tempfile::tempdir().unwrap();
    let run = run_code(
        data.path(),
        &[],
        "import matplotlib.pyplot as plt\nplt.plot([1,2,3],[4,1,9]); plt.show()\nimport pandas as pd\ndf = pd.DataFrame({'a':[1,2]})\ndf",
    );
    assert_eq!(run.status(), "ok", "{}", run.stderr());
    // The figure described where it was shown, then pandas' own repr: its shape footer only
    // when it truncates, as in Jupyter.
    assert_eq!(
        run.stdout(),
        "[figure_1.png: line chart, 1 series: line 3 points: (1, 4), (2, 1), (3, 9)]\n   a\n0  1\n1  2\n"
    );
    assert_eq!(run.output_names(), vec!["figure_1.png"]);
    let png = std::fs::read(run.json["output_files"][0]["path"].as_str().unwrap()).unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a real PNG");
    assert!(run.stderr().is_empty(), "no Agg warning: {}", run.stderr());
    assert_container_gone(run.run_id());
}

#[test]
fn figures_are_sent_once_each_in_order_and_never_when_saved_by_the_code() {
    let data = tempfile::tempdir().unwrap();
    let run = run_code(
        data.path(),
        &[],
        r#"
import matplotlib.pyplot as plt
plt.plot([1, 2]); plt.show()
plt.plot([3, 4]); plt.show()
plt.figure(); plt.plot([5]); plt.savefig("mine.png"); plt.show()
fig = plt.figure(); plt.plot([6])
display(fig)
plt.figure(); plt.bar([1], [2])
print("left open")
"#,
    );
    assert_eq!(run.status(), "ok", "{}", run.stderr());
    let mut names = run.output_names();
    names.sort();
    // Two shows, one display, one figure left open; the saved one only under its own name.
    assert_eq!(
        names,
        vec![
            "figure_1.png",
            "figure_2.png",
            "figure_3.png",
            "figure_4.png",
            "mine.png"
        ]
    );
    // Each figure described where it was shown, in order with what the code printed.
    assert_eq!(
        run.stdout(),
        "[figure_1.png: line chart, 1 series: line 2 points: (0, 1), (1, 2)]\n\
         [figure_2.png: line chart, 1 series: line 2 points: (0, 3), (1, 4)]\n\
         [figure_3.png: line chart, 1 series: line 1 point: (0, 6)]\n\
         left open\n\
         [figure_4.png: bar chart, 1 series: bar 1 point: (1, 2)]\n"
    );
}

#[test]
fn a_figure_the_code_saved_is_not_sent_again_whatever_backend_it_chose() {
    let data = tempfile::tempdir().unwrap();
    for (how, code) in [
        (
            "matplotlib.use before pyplot",
            "import matplotlib\nmatplotlib.use('Agg')\nimport matplotlib.pyplot as plt\nplt.plot([1, 2, 3])\nplt.savefig('plot.png')",
        ),
        (
            "plt.switch_backend",
            "import matplotlib.pyplot as plt\nplt.switch_backend('agg')\nplt.plot([1, 2, 3])\nplt.savefig('plot.png')",
        ),
        (
            "Figure.savefig after matplotlib.use",
            "import matplotlib\nmatplotlib.use('agg')\nfrom matplotlib.figure import Figure\nimport matplotlib.pyplot as plt\nfig, ax = plt.subplots()\nax.bar([1], [2])\nfig.savefig('plot.png')",
        ),
    ] {
        let run = run_code(data.path(), &[], code);
        assert_eq!(run.status(), "ok", "{how}: {}", run.stderr());
        assert_eq!(run.output_names(), vec!["plot.png"], "{how}");
    }
    // A figure it did not save is still shown, under the backend it chose.
    let shown = run_code(
        data.path(),
        &[],
        "import matplotlib\nmatplotlib.use('Agg')\nimport matplotlib.pyplot as plt\nplt.plot([1, 2])",
    );
    assert_eq!(shown.output_names(), vec!["figure_1.png"]);
}

#[test]
fn the_last_expression_follows_ipythons_rules_and_display_keeps_order() {
    let data = tempfile::tempdir().unwrap();
    let shown = run_code(
        data.path(),
        &[],
        "print('first')\ndisplay({'k': 1}, [1, 2])\nprint('then')\n40 + 2",
    );
    assert_eq!(shown.stdout(), "first\n{'k': 1}\n[1, 2]\nthen\n42\n");
    let none = run_code(data.path(), &[], "x = 5\nNone");
    assert_eq!(none.stdout(), "");
    let silenced = run_code(data.path(), &[], "40 + 2;  # nothing shown");
    assert_eq!(silenced.stdout(), "");
    let big = run_code(
        data.path(),
        &[],
        "import pandas as pd\npd.DataFrame({'a': range(1000), 'b': range(1000)})",
    );
    let text = big.stdout();
    assert!(text.contains("[1000 rows x 2 columns]"), "{text}");
    assert!(text.lines().count() < 40, "rows are capped: {text}");
    let syntax = run_code(data.path(), &[], "x = (");
    assert_eq!(syntax.json["error"]["type"], "SyntaxError");
    assert!(!syntax.stderr().contains("ast.py"), "{}", syntax.stderr());
}

#[test]
fn a_notebooks_own_display_and_the_last_value_carry_over() {
    let data = tempfile::tempdir().unwrap();
    let first = run_in_session(
        data.path(),
        "u1",
        "nb",
        "class display:\n    def __init__(self, *frames):\n        self.frames = frames\n    def __repr__(self):\n        return 'shown: ' + ', '.join(self.frames)\n6 * 7",
    );
    assert_eq!(first.status(), "ok", "{}", first.stderr());
    assert_eq!(first.stdout(), "42\n");
    let second = run_in_session(
        data.path(),
        "u1",
        "nb",
        "print(_ + 1)\ndisplay('df1', 'df2')",
    );
    assert_eq!(second.status(), "ok", "{}", second.stderr());
    assert_eq!(second.stdout(), "43\nshown: df1, df2\n");
}

#[test]
fn rng_states_styles_options_and_the_working_directory_carry_over() {
    let data = tempfile::tempdir().unwrap();
    let first = run_in_session(
        data.path(),
        "u1",
        "nb",
        "import numpy as np, random, os\nimport pandas as pd\nimport matplotlib.pyplot as plt\nnp.random.seed(0)\nrandom.seed(1)\nplt.style.use('ggplot')\npd.set_option('display.max_rows', 7)\nnp.set_printoptions(precision=2)\nos.chdir('/tmp')",
    );
    assert_eq!(first.status(), "ok", "{}", first.stderr());
    let second = run_in_session(
        data.path(),
        "u1",
        "nb",
        "print(np.random.rand(), random.random(), plt.rcParams['axes.facecolor'], pd.get_option('display.max_rows'), np.array([1/3]), os.getcwd())",
    );
    assert_eq!(second.status(), "ok", "{}", second.stderr());
    // What the same two cells print in one Python process.
    assert_eq!(
        second.stdout(),
        "0.5488135039273248 0.13436424411240122 #E5E5E5 7 [0.33] /tmp\n"
    );
}

#[test]
fn numpy_views_and_shared_objects_stay_shared_across_runs() {
    let data = tempfile::tempdir().unwrap();
    let first = run_in_session(
        data.path(),
        "u1",
        "nb",
        "import numpy as np\nx2 = np.arange(12).reshape(3, 4)\nx2_sub = x2[:2, :2]\nrow = x2[::-1][0]\nrows = [1, 2]\nby_name = {'rows': rows}",
    );
    assert_eq!(first.status(), "ok", "{}", first.stderr());
    let second = run_in_session(
        data.path(),
        "u1",
        "nb",
        "x2_sub[0, 0] = 99\nrow[1] = -1\nrows.append(3)\nprint(x2.tolist(), by_name['rows'])",
    );
    assert_eq!(second.status(), "ok", "{}", second.stderr());
    // As in one Python process: the views write into x2, the dict holds the same list.
    assert_eq!(
        second.stdout(),
        "[[99, 1, 2, 3], [4, 5, 6, 7], [8, -1, 10, 11]] [1, 2, 3]\n"
    );
    let third = run_in_session(
        data.path(),
        "u1",
        "nb",
        "x2_sub[1, 1] = 55\nprint(x2[1, 1])",
    );
    assert_eq!(
        third.stdout(),
        "55\n",
        "still a view after a second save: {}",
        third.stderr()
    );
}

#[test]
fn variables_persist_for_the_same_user_and_session_only() {
    let data = tempfile::tempdir().unwrap();
    let first = run_in_session(
        data.path(),
        "alice",
        "chan-1",
        "x = 41\nimport numpy as np\ndef inc(v):\n    return v + 1\nf = open('/etc/hostname')",
    );
    assert_eq!(first.status(), "ok", "{}", first.stderr());
    let session = session_notes(&first);
    assert_eq!(session["saved"], true, "{session}");
    assert_eq!(session["not_kept"][0]["name"], "f");
    assert_eq!(session["not_kept"][0]["reason"], "file");

    let second = run_in_session(data.path(), "alice", "chan-1", "print(inc(x), np.pi > 3)");
    assert_eq!(second.status(), "ok", "{}", second.stderr());
    assert_eq!(second.stdout(), "42 True\n");
    assert!(second.json["phases"]["restore_ms"].as_f64().unwrap() > 0.0);

    for (user, session) in [("bob", "chan-1"), ("alice", "chan-2")] {
        let other = run_in_session(
            data.path(),
            user,
            session,
            "import os\nprint(sorted(os.listdir('/mnt/inputs')))\nprint(x + 1)",
        );
        assert_eq!(other.json["error"]["type"], "NameError", "{user} {session}");
        assert_eq!(
            other.stdout(),
            "[]\n",
            "no snapshot staged for {user}/{session}"
        );
    }
    // The snapshot is not one of the user's files.
    let listed = codebox(data.path())
        .args(["files", "list", "--user", "alice", "--json"])
        .output()
        .unwrap();
    let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(listed.as_array().map(Vec::len), Some(0), "{listed}");
}

#[test]
fn a_timed_out_run_keeps_the_state_from_before_it() {
    let data = tempfile::tempdir().unwrap();
    run_in_session(data.path(), "carol", "s", "x = 1");
    let stopped = run_with(
        codebox(data.path()),
        &["--user", "carol", "--session", "s", "--timeout", "2"],
        "x = 2\nwhile True: pass",
    );
    assert_eq!(stopped.status(), "timeout");
    assert_eq!(stopped.json["session"]["saved"], false);
    let after = run_in_session(data.path(), "carol", "s", "print(x)");
    assert_eq!(after.stdout(), "1\n");
}

#[test]
fn a_corrupt_snapshot_is_reported_and_dropped_and_the_code_still_runs() {
    let data = tempfile::tempdir().unwrap();
    run_in_session(data.path(), "dave", "s", "x = 1");
    let user_dir = data.path().join("user_files/dave");
    let snapshots: Vec<_> = std::fs::read_dir(&user_dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(snapshots.len(), 1, "{snapshots:?}");
    std::fs::write(&snapshots[0], b"not a snapshot at all").unwrap();

    let run = run_in_session(data.path(), "dave", "s", "print('ran')");
    assert_eq!(run.status(), "ok");
    assert_eq!(run.stdout(), "ran\n");
    let error = run.json["session"]["restore_error"].as_str().unwrap();
    assert!(error.contains("not a codebox snapshot"), "{error}");
    let next = run_in_session(data.path(), "dave", "s", "print(x)");
    assert_eq!(next.json["error"]["type"], "NameError");
    assert!(next.json["session"]["restore_error"].is_null());
}

#[test]
fn a_million_row_frame_survives_between_runs_with_save_and_restore_timed() {
    let data = tempfile::tempdir().unwrap();
    let first = run_in_session(
        data.path(),
        "erin",
        "s",
        "import pandas as pd, numpy as np\ndf = pd.DataFrame({'a': np.arange(1_000_000), 'b': np.random.rand(1_000_000)})",
    );
    assert_eq!(first.status(), "ok", "{}", first.stderr());
    assert_eq!(first.json["session"]["saved"], true);
    assert!(first.json["phases"]["save_ms"].as_f64().unwrap() > 0.0);
    let second = run_in_session(data.path(), "erin", "s", "print(len(df), int(df.a.sum()))");
    assert_eq!(
        second.stdout(),
        "1000000 499999500000\n",
        "{}",
        second.stderr()
    );
    assert!(second.json["phases"]["restore_ms"].as_f64().unwrap() > 0.0);
}

#[test]
fn a_snapshot_sent_while_the_codes_process_exits_arrives_whole() {
    // The run ends once the code's process says it saved; its exit (SIGCHLD) then lands
    // while an ~800 KB snapshot is being written to the host, which once cut the write
    // short and got the run refused for a blob that did not match its digest.
    let data = tempfile::tempdir().unwrap();
    for round in 0..4 {
        let run = run_in_session(
            data.path(),
            "fay",
            "s",
            &format!(
                "import numpy as np, pandas as pd\nframe{round} = pd.DataFrame(np.random.rand(20000, 5))\nprint(len(frame{round}))"
            ),
        );
        assert_eq!(run.status(), "ok", "round {round}: {}", run.json);
        assert_eq!(run.stdout(), "20000\n");
        assert_eq!(run.json["session"]["saved"], true, "{}", run.json);
    }
    let last = run_in_session(data.path(), "fay", "s", "print(len(frame0) + len(frame3))");
    assert_eq!(last.stdout(), "40000\n", "{}", last.json);
}

#[test]
fn sessions_and_figures_work_under_gvisor() {
    let data = tempfile::tempdir().unwrap();
    let args = ["--user", "gina", "--session", "s", "--runtime", "runsc"];
    let first = run_with(
        codebox(data.path()),
        &args,
        "import matplotlib.pyplot as plt\ny = [3, 1, 2]\nplt.plot(y); plt.show()",
    );
    assert_eq!(first.status(), "ok", "{}", first.stderr());
    assert_eq!(first.output_names(), vec!["figure_1.png"]);
    let second = run_with(codebox(data.path()), &args, "sorted(y)");
    assert_eq!(second.stdout(), "[1, 2, 3]\n", "{}", second.stderr());
}

#[test]
fn sessions_off_keep_nothing() {
    let data = tempfile::tempdir().unwrap();
    let mut cmd = codebox(data.path());
    cmd.env("SESSION_STATE", "off");
    let first = run_with(cmd, &["--user", "hal", "--session", "s"], "x = 1");
    assert!(first.json["session"].is_null());
    let mut cmd = codebox(data.path());
    cmd.env("SESSION_STATE", "off");
    let second = run_with(cmd, &["--user", "hal", "--session", "s"], "print(x)");
    assert_eq!(second.json["error"]["type"], "NameError");
}

#[test]
fn code_that_forges_its_end_is_stopped_as_a_timeout() {
    let data = tempfile::tempdir().unwrap();
    // The phase pipe exists only in a session; forging `finished` there buys at most the
    // save budget (here 5 s, the floor), then the run is stopped and called a timeout.
    let forge = r#"
import os, json, time
for fd in range(3, 64):
    try:
        os.write(fd, b'{"phase": "finished", "exit_code": 0}\n')
    except OSError:
        pass
time.sleep(30)
"#;
    let started = std::time::Instant::now();
    let run = run_with(
        codebox(data.path()),
        &["--user", "ivy", "--session", "s", "--timeout", "2"],
        forge,
    );
    assert_eq!(run.status(), "timeout", "{}", run.json);
    assert!(started.elapsed().as_secs() < 20, "{:?}", started.elapsed());
    assert_eq!(run.json["session"]["saved"], false);
    // Without a session the code has no such pipe at all: plain timeout at its limit.
    let started = std::time::Instant::now();
    let plain = run_with(codebox(data.path()), &["--timeout", "2"], forge);
    assert_eq!(plain.status(), "timeout");
    assert!(started.elapsed().as_secs() < 10, "{:?}", started.elapsed());
}

#[test]
fn a_fifo_where_the_snapshot_goes_does_not_hang_the_run() {
    let data = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    let run = run_in_session(
        data.path(),
        "jay",
        "s",
        "import os, codebox_session\nos.mkfifo('/mnt/state/snapshot')\ncodebox_session.save = lambda *a, **k: {'kept': []}",
    );
    assert_eq!(run.status(), "ok", "{}", run.json);
    assert!(started.elapsed().as_secs() < 15, "{:?}", started.elapsed());
    assert_eq!(run.json["session"]["saved"], false);
}
