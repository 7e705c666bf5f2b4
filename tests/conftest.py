"""Shared test configuration: the device that device-aware tests run on.

``DENDRIX_TEST_DEVICE`` selects it: ``cpu`` (default), ``cuda`` or ``cuda:N``. Tests that take the ``device``
fixture build their modules and data on the CPU and move them there; with ``cuda`` on a machine without CUDA
they are skipped (not failed), so the same command works everywhere::

    DENDRIX_TEST_DEVICE=cuda python -m pytest -q tests/test_contract.py

Tests that are CPU by nature (numba kernels, resident-memory measures) do not take the fixture.
"""

from __future__ import annotations

import os

import pytest
import torch

DEVICE_ENV = "DENDRIX_TEST_DEVICE"


def selected_device_name() -> str:
    """The device named by ``DENDRIX_TEST_DEVICE`` (default ``"cpu"``), validated as a torch device string."""
    name = os.environ.get(DEVICE_ENV, "").strip() or "cpu"
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise pytest.UsageError(f"{DEVICE_ENV}={name!r} is not a torch device ({err})") from None
    if device.type not in ("cpu", "cuda"):
        raise pytest.UsageError(f"{DEVICE_ENV} must be cpu, cuda or cuda:N, got {name!r}")
    return name


@pytest.fixture(scope="session")
def device() -> torch.device:
    """The test device; skips the test when it is a CUDA device and CUDA is not available."""
    dev = torch.device(selected_device_name())
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            pytest.skip(f"{DEVICE_ENV}={dev} but CUDA is not available")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            pytest.skip(f"{DEVICE_ENV}={dev} but only {torch.cuda.device_count()} CUDA device(s) exist")
    return dev


def pytest_report_header(config) -> str:
    return f"dendrix test device: {selected_device_name()} ({DEVICE_ENV})"
