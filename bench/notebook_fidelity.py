#!/usr/bin/env python3
"""Notebook fidelity: how closely codebox's cell-by-cell runs match a real Jupyter kernel.

Each notebook in bench/notebooks runs twice through an IPython kernel with nbclient (the
reference; a cell whose text differs between those two runs is "not comparable"), then once
cell by cell through `codebox run --json --user fidelity --session <notebook> -c <cell>`,
all codebox runs sharing one fresh DATA_DIR. Per code cell it compares:
  text     the reference's stdout stream and text/plain results (in output order; a result
           carrying image/png is a figure, not text) vs codebox's stdout, both normalised
           (trailing whitespace and blank lines, 0x addresses, matplotlib object reprs);
  figures  figures shown (reference image/png outputs vs codebox figure_N.png/image_N.png)
           and, separately, .png files the cell saved itself (new or changed files in the
           kernel's directory vs the other .png files codebox collected);
  error    the reference's ename vs codebox's error.type (None when there is none).
Usage: python bench/notebook_fidelity.py [--short] [--codebox PATH] [--json OUT]
(normally through bash bench/notebook-fidelity.sh, which makes the venv this needs).
Exit status 0 whatever the fidelity; non-zero only when the harness itself cannot work.
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHOWN_FIGURE = re.compile(r'^(figure|image)_\d+\.png$')
LIBRARIES = ('numpy', 'pandas', 'matplotlib', 'scikit-learn', 'scipy')
JUPYTER_LIBRARIES = ('ipython', 'ipykernel', 'matplotlib-inline', 'nbclient')
INLINE_BACKEND = 'module://matplotlib_inline.backend_inline'
MAX_DIFFS = 40


class HarnessError(Exception):
    """The benchmark cannot be carried out (as opposed to a fidelity difference)."""


# ---------------------------------------------------------------- normalisation

_MPL_OBJECT = re.compile(r'<matplotlib\.[\w.]+ (?:object )?at 0x[0-9a-fA-F]+>')
_MPL_RUN = re.compile(r'\[?\x00(?:\s*,\s*\x00)*\s*,?\]?')
_DEFAULT_REPR = re.compile(r'(<[\w.]+) object at (0x[0-9a-fA-F]+>)')
_ADDRESS = re.compile(r'0x[0-9a-fA-F]+')
# codebox's words for a figure it wrote (`[figure_1.png: line chart, ...]`), printed where the
# figure was shown for a model that cannot see it: Jupyter has the figure there instead.
_FIGURE_WORDS = re.compile(r'^\[figure_\d+\.png: .*\]$\n?', re.M)


def without_figure_words(text):
    return _FIGURE_WORDS.sub('', text)


def normalise(text):
    """The text as compared: matplotlib object reprs (one, or a list of them, IPython's
    `<... at 0x>` or repr's `<... object at 0x>`) become one token, other default reprs
    lose ' object', addresses are blanked, trailing whitespace and blank lines go."""
    text = text.replace('\r\n', '\n')
    text = _MPL_OBJECT.sub('\x00', text)
    text = _MPL_RUN.sub('<matplotlib objects>', text)
    text = _DEFAULT_REPR.sub(r'\1 at \2', text)
    text = _ADDRESS.sub('0x…', text)
    lines = [line.rstrip() for line in text.split('\n')]
    while lines and not lines[-1]:
        lines.pop()
    return '\n'.join(lines)


# ---------------------------------------------------------------- the reference

def png_snapshot(directory):
    found = {}
    for dirpath, _dirs, files in os.walk(directory):
        for name in files:
            if name.lower().endswith('.png'):
                path = os.path.join(dirpath, name)
                try:
                    st = os.stat(path)
                except OSError:
                    continue
                found[path] = (st.st_mtime_ns, st.st_size)
    return found


def reference_outputs(outputs):
    """(text, figures shown, ename) of one executed cell's outputs."""
    parts, figures, error = [], 0, None
    for out in outputs:
        kind = out.get('output_type')
        if kind == 'stream':
            if out.get('name') == 'stdout':
                parts.append(out.get('text', ''))
        elif kind in ('execute_result', 'display_data'):
            data = out.get('data', {})
            if 'image/png' in data:
                figures += 1
            elif 'text/plain' in data:
                text = data['text/plain']
                parts.append(text if text.endswith('\n') else text + '\n')
        elif kind == 'error':
            error = out.get('ename')
    return ''.join(parts), figures, error


def run_reference(path, kernel_name, cell_timeout):
    """One Jupyter run of the notebook: per code cell its outputs and saved .png files."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import DeadKernelError

    nb = nbformat.read(str(path), as_version=4)
    workdir = tempfile.mkdtemp(prefix='fidelity-ref-')
    client = NotebookClient(
        nb, kernel_name=kernel_name, timeout=cell_timeout, allow_errors=True,
        interrupt_on_timeout=True, resources={'metadata': {'path': workdir}})
    cells = []
    started = time.monotonic()
    try:
        # The kernel's own log (a warning about its TCP transport at every start) is noise here.
        with client.setup_kernel(stderr=subprocess.DEVNULL):
            for index, cell in enumerate(nb.cells):
                if cell.cell_type != 'code':
                    continue
                before = png_snapshot(workdir)
                try:
                    client.execute_cell(cell, index)
                except DeadKernelError:
                    raise
                except Exception as exc:  # a timeout, or nbclient refusing the cell
                    cell.outputs = list(cell.get('outputs', [])) + [nbformat.v4.new_output(
                        'error', ename=type(exc).__name__, evalue=str(exc), traceback=[])]
                after = png_snapshot(workdir)
                text, figures, error = reference_outputs(cell.outputs)
                cells.append({
                    'index': index,
                    'source': cell.source,
                    'text': text,
                    'figures': figures,
                    'saved': sum(1 for p, v in after.items() if before.get(p) != v),
                    'error': error,
                })
    except Exception as exc:
        raise HarnessError(f'the Jupyter kernel failed on {path.name}: '
                           f'{type(exc).__name__}: {exc}') from exc
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return cells, time.monotonic() - started


def check_reference(kernel_name, cell_timeout):
    """The reference kernel must itself work: a figure shown inline, a result as text.
    (A Jupyter too new for the image's matplotlib fails every plotting cell instead.)"""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell('import matplotlib.pyplot as plt\nplt.plot([1, 2]);'),
        nbformat.v4.new_code_cell('40 + 2')])
    client = NotebookClient(nb, kernel_name=kernel_name, timeout=cell_timeout,
                            allow_errors=True)
    try:
        with client.setup_kernel(stderr=subprocess.DEVNULL):
            for index, cell in enumerate(nb.cells):
                client.execute_cell(cell, index)
    except Exception as exc:
        raise HarnessError(f'the Jupyter kernel {kernel_name!r} does not start: '
                           f'{type(exc).__name__}: {exc}') from exc
    results = [reference_outputs(cell.outputs) for cell in nb.cells]
    for text, _figures, error in results:
        if error:
            evalue = next(o.get('evalue', '') for c in nb.cells for o in c.outputs
                          if o.get('output_type') == 'error')
            raise HarnessError(f'the reference kernel fails a plain plot: {error}: {evalue}')
    if results[0][1] != 1 or results[1][0].strip() != '42':
        raise HarnessError(f'the reference kernel showed {results[0][1]} figures for one '
                           f'plot and {results[1][0]!r} for 40 + 2 (MPLBACKEND '
                           f"{os.environ.get('MPLBACKEND')!r}: try --kernel-backend)")


# ---------------------------------------------------------------- codebox

def codebox_json(cmd, env, what):
    for attempt in (1, 2):
        try:
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
        except subprocess.TimeoutExpired:
            problem = 'did not answer within 900 s'
        else:
            if proc.returncode == 0:
                try:
                    return json.loads(proc.stdout)
                except json.JSONDecodeError:
                    problem = f'printed no JSON object: {proc.stdout[:300]!r}'
            else:
                problem = (f'exited {proc.returncode}: '
                           f'{(proc.stderr.strip() or proc.stdout.strip())[:500]}')
        if attempt == 1:
            time.sleep(2)
    raise HarnessError(f'codebox {what} {problem}')


def dropped_names(items):
    names = []
    for item in items or []:
        if isinstance(item, dict):
            name = item.get('name', '?')
            why = item.get('reason') or item.get('kind') or item.get('why')
            names.append(f'{name} ({why})' if why else str(name))
        else:
            names.append(str(item))
    return names


def run_codebox_cell(codebox, env, session, source):
    if not source.strip():
        return {'text': '', 'figures': 0, 'saved': 0, 'error': None, 'status': 'ok',
                'error_message': None, 'not_kept': [], 'seconds': 0.0}
    cmd = [codebox, 'run', '--json', '--user', 'fidelity', '--session', session, '-c', source]
    started = time.monotonic()
    result = codebox_json(cmd, env, f'run ({session})')
    seconds = time.monotonic() - started
    figures = saved = 0
    for f in result.get('output_files') or []:
        name = f.get('name', '')
        if SHOWN_FIGURE.match(name):
            figures += 1
        elif name.lower().endswith('.png'):
            saved += 1
    status = result.get('status')
    error = result.get('error') or None
    if error:
        kind, message = error.get('type'), error.get('message')
    elif status != 'ok':
        kind, message = f'status:{status}', None
    else:
        kind, message = None, None
    session_report = result.get('session') or {}
    return {
        'text': result.get('stdout') or '',
        'figures': figures,
        'saved': saved,
        'error': kind,
        'status': status,
        'error_message': message,
        'not_kept': dropped_names(session_report.get('not_kept')),
        'not_restored': dropped_names(session_report.get('not_restored')),
        'restore_error': session_report.get('restore_error'),
        'seconds': seconds,
    }


def codebox_versions(codebox, env):
    code = ('from importlib.metadata import version\n'
            'import platform\n'
            f'print(platform.python_version(), *[version(n) for n in {LIBRARIES!r}])')
    result = codebox_json([codebox, 'run', '--json', '-c', code], env, 'version check')
    fields = (result.get('stdout') or '').split()
    if result.get('status') != 'ok' or len(fields) != len(LIBRARIES) + 1:
        return {'error': (result.get('stderr') or '')[-300:]}
    return dict(zip(('python',) + LIBRARIES, fields))


def local_versions():
    import platform
    from importlib.metadata import PackageNotFoundError, version
    found = {'python': platform.python_version()}
    for name in LIBRARIES + JUPYTER_LIBRARIES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = 'missing'
    return found


# ---------------------------------------------------------------- report

def pct(part, whole):
    return f'{part} ({100.0 * part / whole:.0f}%)' if whole else f'{part} (-)'


def first_lines(a, b, count=3):
    """The first `count` lines of each side, or from the first line that differs when the
    first `count` agree."""
    al, bl = a.split('\n') if a else [], b.split('\n') if b else []
    first = next((i for i in range(max(len(al), len(bl)))
                  if i >= len(al) or i >= len(bl) or al[i] != bl[i]), 0)
    start = 0 if first < count else first
    return start, al[start:start + count], bl[start:start + count]


def clip(line, width=110):
    return line if len(line) <= width else line[:width - 1] + '…'


def print_report(rows, per_notebook, timing, versions):
    print()
    print('Notebook fidelity: Jupyter (nbclient, IPython kernel) vs codebox, cell by cell')
    print(f"  versions  jupyter: {versions['jupyter']}")
    print(f"            codebox: {versions['codebox']}")
    print('  comparable = same text in both reference runs; same text counts comparable cells')
    print('  only; same figures = same number shown and same number of .png saved')
    print()
    head = f"{'notebook':32s} {'cells':>5s} {'comparable':>12s} {'same text':>12s} " \
           f"{'same figures':>13s} {'same error':>12s}"
    print(head)
    print('-' * len(head))
    totals = [0, 0, 0, 0, 0]
    for name, n in per_notebook:
        print(f'{name:32s} {n[0]:5d} {n[1]:12d} {n[2]:12d} {n[3]:13d} {n[4]:12d}')
        totals = [t + v for t, v in zip(totals, n)]
    print('-' * len(head))
    cells, comparable, text, figures, errors = totals
    print(f"{'TOTAL':32s} {cells:5d} {pct(comparable, cells):>12s} "
          f"{pct(text, comparable):>12s} {pct(figures, cells):>13s} {pct(errors, cells):>12s}")
    print()
    print(f"timing: jupyter reference {timing['reference_run1']:.1f} s "
          f"(second run {timing['reference_run2']:.1f} s, kernel start included) vs "
          f"codebox {timing['codebox']:.1f} s "
          f"({timing['codebox'] / max(cells, 1):.2f} s per cell, {cells} cells)")

    differing = [r for r in rows if not (r['same_text'] is not False
                                         and r['same_figures'] and r['same_error'])]
    print()
    print(f'differing cells: {len(differing)} (first {min(len(differing), MAX_DIFFS)} shown; '
          'In [N] = the N-th code cell)')
    for r in differing[:MAX_DIFFS]:
        what = []
        if r['same_text'] is False:
            what.append('text')
        if not r['same_figures']:
            what.append(f"figures {r['ref_figures']}+{r['ref_saved']} saved / "
                        f"{r['cb_figures']}+{r['cb_saved']} saved")
        if not r['same_error']:
            what.append(f"error {r['ref_error']} / {r['cb_error']}")
        src = r['source'].strip().split('\n')[0] if r['source'].strip() else ''
        print(f"\n{r['notebook']} In [{r['code_cell']}]  ({'; '.join(what)})  "
              f"{clip(src, 60)}")
        start, ref_lines, cb_lines = first_lines(r['ref_text_norm'], r['cb_text_norm'])
        note = f' (from line {start + 1})' if start else ''
        for side, lines in (('jupyter', ref_lines), ('codebox', cb_lines)):
            if not lines:
                print(f'  {side}{note}| (nothing)')
            for line in lines:
                print(f'  {side}{note}| {clip(line)}')
        if r['cb_error'] and not r['same_error'] and r.get('cb_error_message'):
            print(f"  codebox error: {clip(r['cb_error'] + ': ' + r['cb_error_message'])}")
        if r.get('cb_not_kept'):
            print(f"  codebox not kept: {clip(', '.join(r['cb_not_kept']))}")


# ---------------------------------------------------------------- main

def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--short', action='store_true', help='only the first 2 notebooks')
    parser.add_argument('--codebox', default=str(ROOT / 'target' / 'debug' / 'codebox'),
                        help='the codebox binary (default target/debug/codebox)')
    parser.add_argument('--json', metavar='OUT', help='write the per-cell results here')
    parser.add_argument('--notebooks', default=str(ROOT / 'bench' / 'notebooks'),
                        help='directory of .ipynb files (default bench/notebooks)')
    parser.add_argument('--kernel', default='python3', help='Jupyter kernel name')
    parser.add_argument('--kernel-backend', default=INLINE_BACKEND,
                        help="MPLBACKEND of the reference kernel (default Jupyter's inline "
                             'backend, which renders with Agg and shows figures as PNG)')
    parser.add_argument('--cell-timeout', type=int, default=120,
                        help='seconds one reference cell may take')
    args = parser.parse_args(argv)

    try:
        import nbclient  # noqa: F401
        import nbformat  # noqa: F401
    except ImportError as exc:
        raise HarnessError(f'{exc}: run through bash bench/notebook-fidelity.sh') from exc
    codebox = str(Path(args.codebox).resolve())
    if not os.access(codebox, os.X_OK):
        raise HarnessError(f'no codebox binary at {codebox} (build it, or pass --codebox)')
    notebooks = sorted(Path(args.notebooks).glob('*.ipynb'))
    if not notebooks:
        raise HarnessError(f'no notebooks in {args.notebooks}')
    if args.short:
        notebooks = notebooks[:2]

    # The reference kernel inherits this environment.
    os.environ['MPLBACKEND'] = args.kernel_backend
    os.environ.setdefault('PYDEVD_DISABLE_FILE_VALIDATION', '1')

    data_dir = tempfile.mkdtemp(prefix='codebox-fidelity-data-')
    env = dict(os.environ, DATA_DIR=data_dir)
    rows, per_notebook = [], []
    timing = {'reference_run1': 0.0, 'reference_run2': 0.0, 'codebox': 0.0}
    try:
        check_reference(args.kernel, args.cell_timeout)
        versions = {'jupyter': local_versions(), 'codebox': codebox_versions(codebox, env)}
        for key in versions:
            versions[key] = ' '.join(f'{k} {v}' for k, v in versions[key].items())
        for path in notebooks:
            name = path.stem
            print(f'== {name}: jupyter run 1', end='', flush=True)
            ref1, t1 = run_reference(path, args.kernel, args.cell_timeout)
            print(f' ({t1:.1f} s), run 2', end='', flush=True)
            ref2, t2 = run_reference(path, args.kernel, args.cell_timeout)
            print(f' ({t2:.1f} s), codebox', end='', flush=True)
            timing['reference_run1'] += t1
            timing['reference_run2'] += t2
            started = time.monotonic()
            counts = [0, 0, 0, 0, 0]
            for number, (a, b) in enumerate(zip(ref1, ref2), start=1):
                cb = run_codebox_cell(codebox, env, name, a['source'])
                ref_norm, ref2_norm = normalise(a['text']), normalise(b['text'])
                cb_norm = normalise(without_figure_words(cb['text']))
                comparable = ref_norm == ref2_norm
                row = {
                    'notebook': name,
                    'cell_index': a['index'],
                    'code_cell': number,
                    'source': a['source'],
                    'comparable': comparable,
                    'same_text': (ref_norm == cb_norm) if comparable else None,
                    'same_figures': (a['figures'], a['saved']) == (cb['figures'], cb['saved']),
                    'same_error': a['error'] == cb['error'],
                    'ref_text': a['text'],
                    'ref2_text': b['text'],
                    'cb_text': cb['text'],
                    'ref_text_norm': ref_norm,
                    'cb_text_norm': cb_norm,
                    'ref_figures': a['figures'],
                    'ref_saved': a['saved'],
                    'cb_figures': cb['figures'],
                    'cb_saved': cb['saved'],
                    'ref_error': a['error'],
                    'cb_error': cb['error'],
                    'cb_error_message': cb['error_message'],
                    'cb_status': cb['status'],
                    'cb_not_kept': cb['not_kept'],
                    'cb_not_restored': cb.get('not_restored', []),
                    'cb_restore_error': cb.get('restore_error'),
                    'cb_seconds': round(cb['seconds'], 3),
                }
                rows.append(row)
                counts[0] += 1
                counts[1] += comparable
                counts[2] += row['same_text'] is True
                counts[3] += row['same_figures']
                counts[4] += row['same_error']
            elapsed = time.monotonic() - started
            timing['codebox'] += elapsed
            print(f' ({elapsed:.1f} s)', flush=True)
            per_notebook.append((name, counts))
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)

    print_report(rows, per_notebook, timing, versions)
    if args.json:
        summary = [dict(zip(('notebook', 'cells', 'comparable', 'same_text', 'same_figures',
                             'same_error'), (name,) + tuple(n))) for name, n in per_notebook]
        with open(args.json, 'w') as f:
            json.dump({'versions': versions, 'timing_s': timing, 'notebooks': summary,
                       'cells': rows}, f, indent=1, ensure_ascii=False)
        print(f'\nper-cell results written to {args.json}')
    return 0


if __name__ == '__main__':
    try:
        sys.exit(main())
    except HarnessError as exc:
        print(f'\nnotebook_fidelity: {exc}', file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
