"""Two names for one object stay one object across runs, as they do between a notebook's
cells: `b = a`, a dict holding the list `a`, and a numpy view of the array `a`
(`x_sub = x[:2, :2]`, then `x_sub[0, 0] = 99` changes `x`).

Every variable is still its own record in the snapshot (one that cannot be saved or
restored costs only itself): where a value reaches an object that an earlier record already
holds as a variable, the pickle refers to that variable by name instead of copying it, and
a view of a variable's array is saved as where it lies in that array."""

import sys

# Values whose identity a program cannot rely on: never referred to, always copied.
_ATOMIC = (int, float, complex, str, bytes, bool, type(None), range)
REFERENCE = "codebox-variable"


class Saved:
    """The variables written so far, by object id, for later records to refer to; and the
    contiguous arrays among them by the array whose memory they lie in."""

    def __init__(self):
        self._by_id = {}
        self._arrays_by_root = {}

    def add(self, name, value):
        if isinstance(value, _ATOMIC):
            return
        self._by_id.setdefault(id(value), (name, value))
        root = _root_array(value)
        if root is not None and (value.flags.c_contiguous or value.flags.f_contiguous):
            self._arrays_by_root.setdefault(id(root), []).append(value)

    def name_of(self, obj):
        found = self._by_id.get(id(obj))
        return found[0] if found is not None and found[1] is obj else None

    def arrays_over(self, root):
        """Saved contiguous arrays in `root`'s memory (`root` itself first when saved)."""
        return [a for a in self._arrays_by_root.get(id(root), ()) if _root_array(a) is root]

    def __bool__(self):
        return bool(self._by_id)


def _root_array(value):
    """The array that owns the memory of the ndarray `value` (itself when it owns it)."""
    np = sys.modules.get("numpy")
    if np is None or type(value) is not np.ndarray:
        return None
    root = value
    while isinstance(root.base, np.ndarray):
        root = root.base
    return root


def save_order(item):
    """Sort key of a (name, value) to save: a view comes after the arrays it may be a view
    into (larger views first), so it can refer to them; everything else keeps its order."""
    value = item[1]
    root = _root_array(value)
    if root is None or root is value:
        return (0, 0)
    return (1, -value.nbytes)


def _address(arr):
    return arr.__array_interface__["data"][0]


def _view_of(arr, saved):
    """(a saved array that `arr` is a view into, byte offset) or None."""
    root = _root_array(arr)
    if root is None or root is arr:
        return None
    for over in saved.arrays_over(root):
        if over is arr:
            continue
        offset = _address(arr) - _address(over)
        try:
            # The same view, rebuilt now, must land on the same bytes, or it is copied.
            rebuilt = _rebuild_view(over, offset, arr.shape, arr.strides, arr.dtype, True)
        except Exception:
            continue
        if _address(rebuilt) == _address(arr):
            return over, offset
    return None


def _rebuild_view(root, offset, shape, strides, dtype, writeable):
    import numpy as np

    buffer = root if root.flags.c_contiguous else root.T
    view = np.ndarray(shape, dtype=dtype, buffer=buffer, offset=offset, strides=strides)
    if not writeable:
        view.flags.writeable = False
    return view


def pickler_class(base):
    """`base` (cloudpickle's or pickle's Pickler) that refers to saved variables."""

    class SharingPickler(base):
        def __init__(self, file, saved, **kwargs):
            super().__init__(file, **kwargs)
            self._saved = saved

        def persistent_id(self, obj):
            name = self._saved.name_of(obj)
            return None if name is None else (REFERENCE, name)

        def reducer_override(self, obj):
            view = _view_of(obj, self._saved)
            if view is not None:
                root, offset = view
                return _rebuild_view, (root, offset, obj.shape, obj.strides, obj.dtype,
                                       bool(obj.flags.writeable))
            parent = getattr(super(), "reducer_override", None)
            return NotImplemented if parent is None else parent(obj)

    return SharingPickler


def unpickler(file, restored):
    """An Unpickler that resolves references to the variables restored before."""
    import pickle

    class SharingUnpickler(pickle.Unpickler):
        def persistent_load(self, pid):
            if isinstance(pid, tuple) and len(pid) == 2 and pid[0] == REFERENCE:
                if pid[1] in restored:
                    return restored[pid[1]]
                raise pickle.UnpicklingError("it shares an object with %r, not restored" % pid[1])
            raise pickle.UnpicklingError("unknown reference")

    return SharingUnpickler(file)
