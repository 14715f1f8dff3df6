"""The matplotlib backend of codebox runs (`MPLBACKEND=module://codebox_backend`): Agg for
drawing, and a `plt.show()` that writes every open figure as a PNG output instead of
warning that Agg cannot show anything."""

from matplotlib.backend_bases import _Backend
from matplotlib.backends.backend_agg import _BackendAgg

import codebox_display

codebox_display.mark_savefig()


@_Backend.export
class _BackendCodebox(_BackendAgg):
    @classmethod
    def show(cls, *args, **kwargs):
        codebox_display.show_figures()
