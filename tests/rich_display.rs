//! Rich display through `codebox run` against the real Docker engine: objects with
//! `_repr_png_` / `_repr_jpeg_` / `_repr_svg_` / `_repr_html_` / `_repr_markdown_`, plotly
//! and Vega-Altair charts, seaborn, `IPython.display`, display magics, and the words that
//! describe a matplotlib figure for a model that cannot see it.

mod common;

use common::{Run, run_code};

fn output_bytes(run: &Run, name: &str) -> Vec<u8> {
    let files = run.json["output_files"].as_array().unwrap();
    let file = files
        .iter()
        .find(|f| f["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("no {name} in {:?}", run.output_names()));
    std::fs::read(file["path"].as_str().unwrap()).unwrap()
}

fn sorted_names(run: &Run) -> Vec<String> {
    let mut names = run.output_names();
    names.sort();
    names
}

fn is_png(bytes: &[u8]) -> bool {
    bytes.starts_with(b"\x89PNG\r\n\x1a\n")
}

#[test]
fn objects_with_image_reprs_become_images_and_svg_is_rendered_to_png() {
    let data = tempfile::tempdir().unwrap();
    let run = run_code(
        data.path(),
        &[],
        r#"
import io
from PIL import Image as PILImage

def encoded(fmt):
    buf = io.BytesIO()
    PILImage.new("RGB", (8, 6), "red").save(buf, format=fmt)
    return buf.getvalue()

class Png:
    def _repr_png_(self): return encoded("PNG")
class Jpeg:
    def _repr_jpeg_(self): return encoded("JPEG")
class Svg:
    def _repr_svg_(self):
        return '<svg xmlns="http://www.w3.org/2000/svg" width="40" height="20"><rect width="40" height="20" fill="blue"/></svg>'

display(Png())
display(Jpeg())
Svg()
"#,
    );
    assert_eq!(run.status(), "ok", "{}", run.stderr());
    assert_eq!(
        sorted_names(&run),
        ["image_1.png", "image_2.jpg", "image_3.png"]
    );
    assert!(is_png(&output_bytes(&run, "image_1.png")));
    assert!(output_bytes(&run, "image_2.jpg").starts_with(b"\xff\xd8\xff"));
    let svg_png = output_bytes(&run, "image_3.png");
    assert!(is_png(&svg_png), "the SVG arrives as a PNG");
    // PNG's IHDR: width and height of the rendered SVG.
    assert_eq!(&svg_png[16..24], &[0, 0, 0, 40, 0, 0, 0, 20]);
    assert_eq!(run.stdout(), "", "images show no text");
}

#[test]
fn plotly_figures_become_a_png_and_their_html_shown_or_last() {
    let data = tempfile::tempdir().unwrap();
    let run = run_code(
        data.path(),
        &["--timeout", "120"],
        r#"
import plotly.graph_objects as go
import plotly.express as px
fig = go.Figure(go.Bar(x=["a", "b"], y=[3, 5]))
fig.show()
px.scatter(x=[1, 2, 3], y=[4, 1, 9], title="scatter")
"#,
    );
    assert_eq!(run.status(), "ok", "{}", run.stderr());
    assert_eq!(
        sorted_names(&run),
        ["chart_1.html", "chart_1.png", "chart_2.html", "chart_2.png"]
    );
    assert!(is_png(&output_bytes(&run, "chart_1.png")));
    assert!(is_png(&output_bytes(&run, "chart_2.png")));
    let html = String::from_utf8(output_bytes(&run, "chart_2.html")).unwrap();
    assert!(
        html.contains("scatter") && html.contains("<html"),
        "{html:.200}"
    );
}

#[test]
fn vega_altair_charts_become_a_png_and_their_html() {
    let data = tempfile::tempdir().unwrap();
    let run = run_code(
        data.path(),
        &["--timeout", "120"],
        r#"
import altair as alt
import pandas as pd
frame = pd.DataFrame({"x": [1, 2, 3], "y": [2, 4, 3]})
alt.Chart(frame).mark_line().encode(x="x", y="y").show()
alt.Chart(frame).mark_bar().encode(x="x:O", y="y")
"#,
    );
    assert_eq!(run.status(), "ok", "{}", run.stderr());
    assert_eq!(
        sorted_names(&run),
        ["chart_1.html", "chart_1.png", "chart_2.html", "chart_2.png"]
    );
    assert!(is_png(&output_bytes(&run, "chart_1.png")));
    assert!(is_png(&output_bytes(&run, "chart_2.png")));
}

#[test]
fn seaborn_draws_through_matplotlib_and_the_figure_is_described() {
    let data = tempfile::tempdir().unwrap();
    let run = run_code(
        data.path(),
        &[],
        r#"
import seaborn as sns
import pandas as pd
import matplotlib.pyplot as plt
frame = pd.DataFrame({"day": [1, 2, 3, 4], "sales": [10.0, 12.5, 9.0, 14.0]})
ax = sns.lineplot(data=frame, x="day", y="sales")
ax.set_title("Sales by day")
plt.show()
"#,
    );
    assert_eq!(run.status(), "ok", "{}", run.stderr());
    assert_eq!(sorted_names(&run), ["figure_1.png"]);
    assert_eq!(
        run.stdout(),
        "[figure_1.png: line chart, title 'Sales by day', x 'day', y 'sales', 1 series: \
         line 4 points: (1, 10), (2, 12.5), (3, 9)]\n"
    );
}

#[test]
fn a_figure_is_described_by_kind_labels_series_and_first_points() {
    let data = tempfile::tempdir().unwrap();
    let run = run_code(
        data.path(),
        &[],
        r#"
import matplotlib.pyplot as plt
fig, (left, right) = plt.subplots(1, 2)
left.plot([0, 1, 2], [1, 4, 9], label="squares")
left.plot([0, 1, 2], [0, 1, 2], label="line")
left.legend()
right.bar(["a", "b"], [3, 5])
right.set_ylabel("count")
fig.suptitle("two panels")
plt.show()
plt.scatter([1, 2], [3, 4]);
"#,
    );
    assert_eq!(run.status(), "ok", "{}", run.stderr());
    assert_eq!(sorted_names(&run), ["figure_1.png", "figure_2.png"]);
    assert_eq!(
        run.stdout(),
        "[figure_1.png: 'two panels', axes 1: line chart, 2 series: 'squares' line 3 points: \
         (0, 1), (1, 4), (2, 9); 'line' line 3 points: (0, 0), (1, 1), (2, 2) | axes 2: bar \
         chart, y 'count', 1 series: bar 2 points: ('a', 3), ('b', 5)]\n\
         [figure_2.png: scatter chart, 1 series: scatter 2 points: (1, 3), (2, 4)]\n"
    );
}

#[test]
fn html_and_markdown_are_text_for_the_model_and_html_beyond_a_table_is_attached() {
    let data = tempfile::tempdir().unwrap();
    let run = run_code(
        data.path(),
        &[],
        r#"
import pandas as pd
class Report:
    def _repr_html_(self):
        return "<h1>Report</h1><ul><li>alpha</li><li>beta</li></ul><script>x()</script>"
class Note:
    def _repr_markdown_(self):
        return "**bold** note"
class Table:
    def _repr_html_(self):
        return "<table><tr><th>k</th><th>v</th></tr><tr><td>a</td><td>1</td></tr></table>"
display(Report())
display(Note())
display(Table())
pd.DataFrame({"a": [1]})
"#,
    );
    assert_eq!(run.status(), "ok", "{}", run.stderr());
    assert_eq!(sorted_names(&run), ["display_1.html"]);
    assert_eq!(
        run.stdout(),
        "Report\nalpha\nbeta\n**bold** note\nk\tv\na\t1\n   a\n0  1\n"
    );
    let html = String::from_utf8(output_bytes(&run, "display_1.html")).unwrap();
    assert!(html.starts_with("<h1>Report</h1>"));
}

#[test]
fn ipython_display_works_without_ipython_installed() {
    let data = tempfile::tempdir().unwrap();
    let run = run_code(
        data.path(),
        &[],
        r##"
%matplotlib inline
import importlib.util
from PIL import Image as PILImage
PILImage.new("RGB", (4, 4), "green").save("dot.png")
from IPython.display import display, Image, HTML, Markdown, SVG, clear_output
import IPython
print(IPython.get_ipython())
display(Image(filename="dot.png"))
display(HTML("<b>bold</b> words"), Markdown("# Title"))
clear_output()
SVG('<svg xmlns="http://www.w3.org/2000/svg" width="4" height="4"/>')
"##,
    );
    assert_eq!(run.status(), "ok", "{}", run.stderr());
    assert_eq!(run.stdout(), "None\nbold words\n# Title\n");
    assert_eq!(
        sorted_names(&run),
        ["dot.png", "image_1.png", "image_2.png"]
    );
    assert_eq!(
        output_bytes(&run, "image_1.png"),
        output_bytes(&run, "dot.png")
    );
}

#[test]
fn with_ipython_installed_its_display_shows_like_ours() {
    let data = tempfile::tempdir().unwrap();
    // An IPython found on the path (here one the code writes, standing in for an installed
    // one): its shell-less `display` would print the repr; codebox's replaces it.
    let run = run_code(
        data.path(),
        &[],
        r#"
import os, sys
os.makedirs("IPython", exist_ok=True)
open("IPython/__init__.py", "w").write("real = True\n")
open("IPython/display.py", "w").write(
    "def display(*objs, **kw):\n    print(*objs)\n"
    "class HTML:\n    def __init__(self, data): self.data = data\n"
    "    def _repr_html_(self): return self.data\n"
)
import IPython
from IPython.display import display, HTML
print(IPython.real)
display(HTML("<p>from <i>real</i> IPython</p>"))
"#,
    );
    assert_eq!(run.status(), "ok", "{}", run.stderr());
    assert_eq!(run.stdout(), "True\nfrom real IPython\n");
}
