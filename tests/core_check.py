"""Check the bare core (``pip install dendrix``, no extras): every neuron kind runs forward and backward on CPU,
the numba-free DLIF path is exact, and a missing extra is one line that names it.

Run as a script, by ``make check-core`` in a fresh virtual environment (where the optional packages must be
absent), or with ``--hide-optional`` in any environment: then each optional package is hidden by a
``sys.modules[name] = None`` guard before dendrix is imported (``tests/test_packaging.py`` does that).
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys

# Packages the core must not need (the heavy ones must not even be installed by `pip install dendrix`).
OPTIONAL = ("numba", "scipy", "sklearn", "matplotlib", "h5py", "yaml", "safetensors", "tqdm", "triton",
            "tensorboard", "onnx", "onnxruntime", "nir", "tonic")
MUST_BE_ABSENT = ("numba", "scipy", "sklearn", "matplotlib", "h5py")


def hide_optional() -> None:
    """Make every optional package unimportable in this process (``import numba`` raises ImportError)."""
    for name in OPTIONAL:
        sys.modules[name] = None  # type: ignore[assignment]


def check_installed_core() -> None:
    """dendrix comes from the installed wheel (not a source tree) and the heavy optional packages are absent."""
    import dendrix

    assert "site-packages" in dendrix.__file__, f"dendrix imported from {dendrix.__file__}, not the installed wheel"
    installed = [name for name in MUST_BE_ABSENT if importlib.util.find_spec(name) is not None]
    assert not installed, f"the bare core installed optional packages: {installed}"


def check_every_kind() -> list[str]:
    import torch

    import dendrix

    kinds = dendrix.available()
    assert len(kinds) >= 15, kinds
    T, B, n_in, n_out = 8, 3, 12, 5
    gen = torch.Generator().manual_seed(0)
    for kind in kinds:
        torch.manual_seed(0)
        layer = dendrix.spiking_layer(kind, n_in, n_out, time_steps=T)
        x = (torch.rand(T, B, n_in, generator=gen) < 0.4).float().requires_grad_(True)
        y = layer(x)
        assert y.shape == (T, B, n_out), (kind, tuple(y.shape))
        assert torch.isfinite(y).all(), kind
        (y.float() * torch.linspace(-1, 1, n_out)).sum().backward()
        grads = [p.grad for p in layer.parameters() if p.requires_grad]
        assert grads and all(g is not None and torch.isfinite(g).all() for g in grads), kind
        assert x.grad is not None and torch.isfinite(x.grad).all(), kind
    return kinds


def check_modules_import() -> int:
    """Every module imports without the extras (optional packages are imported where they are used), but for
    ``dendrix.train``, whose configs and checkpoints need ``dendrix[train]``; the Triton and numba kernel modules
    are imported only by their dispatchers."""
    import importlib
    import pkgutil

    import dendrix
    from dendrix._optional import MissingExtra

    count, failed = 0, []
    for info in pkgutil.walk_packages(dendrix.__path__, "dendrix."):
        name = info.name
        last = name.rsplit(".", 1)[-1]
        if name.endswith("__main__") or last.startswith(("kernels", "numba_")) or "triton" in name:
            continue
        try:
            importlib.import_module(name)
            count += 1
        except MissingExtra as err:
            if not (name == "dendrix.train" or name.startswith("dendrix.train.")):
                failed.append(f"{name}: {err}")
    assert not failed, failed
    return count


def check_bilinear_torch_path_is_exact() -> None:
    import torch

    from dendrix.ops.bilinear import HAVE_NUMBA, bilinear_form, bilinear_reference, build_layout, resolve_backend

    assert not HAVE_NUMBA and resolve_backend("auto", torch.device("cpu")) == "torch"
    layout = build_layout(20, 7, 0.4, generator=torch.Generator().manual_seed(1))
    gen = torch.Generator().manual_seed(2)
    values = torch.randn(layout.nnz, dtype=torch.float64, generator=gen, requires_grad=True)
    s = (torch.rand(9, 20, generator=gen) < 0.3).double().requires_grad_(True)
    out = bilinear_form(s, values, layout)  # auto: the torch engine here
    ref = bilinear_reference(s, values, layout)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    g = torch.randn_like(out)
    got = torch.autograd.grad(out, (s, values), g)
    want = torch.autograd.grad(ref, (s, values), g)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def check_missing_extra_messages() -> None:
    from dendrix._optional import MissingExtra
    from dendrix.data import get_dataset

    try:
        import dendrix.train  # noqa: F401
    except MissingExtra as err:
        assert "pip install 'dendrix[train]'" in str(err) and "\n" not in str(err), str(err)
    else:
        raise AssertionError("dendrix.train imported without pyyaml/safetensors")
    try:
        get_dataset("digits")
    except MissingExtra as err:
        assert str(err) == "dendrix.data.digits needs scikit-learn: pip install 'dendrix[data]'", str(err)
    else:
        raise AssertionError("the digits data set loaded without scikit-learn")
    # The command: one line on stderr, exit code 2.
    code = ("import sys\n" + "".join(f"sys.modules[{n!r}] = None\n" for n in OPTIONAL) +
            "from dendrix.cli import main\nsys.exit(main(['train', 'train.epochs=1']))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and "dendrix[train]" in lines[0], (proc.returncode, proc.stderr)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hide-optional", action="store_true",
                        help="hide the optional packages in this process instead of requiring them absent")
    args = parser.parse_args()
    if args.hide_optional:
        hide_optional()
    else:
        check_installed_core()
    kinds = check_every_kind()
    modules = check_modules_import()
    check_bilinear_torch_path_is_exact()
    check_missing_extra_messages()
    print(f"core check passed: {modules} modules import, {len(kinds)} kinds forward+backward on CPU without "
          f"{', '.join(MUST_BE_ABSENT)}; numba-free DLIF exact; missing extras named")
    return 0


if __name__ == "__main__":
    sys.exit(main())
