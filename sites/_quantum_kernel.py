"""Where the ``ibm_quantum`` site's qiskit calls run: in lwfm's interpreter, or in a
venv sandbox through the venv site's own worker (``VenvSite.call``), not a copy of it.

Both sides run the same stdlib+qiskit module (``_qkernel/lwfm_qkernel.py``); this picks
the side and turns its errors into lwfm's. A sandbox is a :class:`VenvSite` whose
``driver_class`` is that kernel, its directory on the import path, so building,
reusing and stopping the venv and its worker is exactly the venv site's.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from lwfm.errors import SiteError
from lwfm.site import SiteHost

from ._qkernel import lwfm_qkernel
from .venv import VenvSite

KERNEL_DIR = Path(lwfm_qkernel.__file__).resolve().parent
KERNEL_CLASS = "lwfm_qkernel:QuantumKernel"
#: [sites.NAME] keys handed to the sandbox's venv site as they are
VENV_KEYS = ("requirements", "python", "venv_dir", "system_site_packages", "build_timeout")


class Kernel:
    """The quantum kernel as seen from the site: ``call(method, *args)``, JSON in/out."""

    def __init__(self, host: SiteHost, options: dict[str, Any]):
        self.site = host.name
        self.options = options
        cfg = host.config
        self.sandbox: VenvSite | None = None
        self._local: lwfm_qkernel.QuantumKernel | None = None
        self._lock = threading.Lock()
        self._described: dict[str, Any] | None = None
        if cfg.get("requirements") is not None:
            venv_cfg = {k: cfg[k] for k in VENV_KEYS if k in cfg}
            venv_cfg.update(driver_class=KERNEL_CLASS, driver_options=options,
                            pythonpath=[str(KERNEL_DIR)])
            self.sandbox = VenvSite(SiteHost(name=host.name, home=host.home, config=venv_cfg,
                                             instance_id=host.instance_id))

    def _kernel(self) -> lwfm_qkernel.QuantumKernel:
        with self._lock:
            if self._local is None:
                try:
                    self._local = lwfm_qkernel.QuantumKernel(**self.options)
                except ValueError as e:
                    raise SiteError(f"site {self.site!r}: {e}") from None
            return self._local

    def call(self, method: str, *args: Any) -> Any:
        if self.sandbox is not None:
            try:
                return self.sandbox.call(method, *args)
            except SiteError as e:   # the kernel's own errors are clear: drop the traceback
                first = str(e).split("\n", 1)[0]
                if ": ValueError: " in first:
                    raise SiteError(f"site {self.site!r} (sandbox {self.sandbox.venv_dir}): "
                                    f"{first.split(': ValueError: ', 1)[1]}") from None
                raise
        try:
            return getattr(self._kernel(), method)(*args)
        except ValueError as e:   # the kernel's own, clear errors (bad circuit, backend)
            raise SiteError(f"site {self.site!r}: {e}") from None
        except ImportError as e:
            raise SiteError(f"site {self.site!r} needs qiskit: pip install 'lwfm[quantum]' "
                            f"(or give the site requirements to run in a sandbox): {e}") from None

    def describe(self) -> dict[str, Any]:
        """Where the calls run (sandbox prefix, python) and the qiskit versions there;
        asked once, it goes into every result's record."""
        if self._described is None:
            d = self.call("describe")
            d["sandbox"] = str(self.sandbox.venv_dir) if self.sandbox is not None else "host"
            self._described = d
        return self._described

    def close(self) -> None:
        if self.sandbox is not None:
            if self.sandbox.existing_worker() is not None:
                try:
                    self.sandbox.call("close")
                except SiteError:
                    pass   # the worker is gone already; closing it below is all there is
            self.sandbox.close()
        elif self._local is not None:
            self._local.close()
