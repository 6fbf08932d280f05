"""The served world of the HTTP API tests (serve_support.build_world), one per test module;
modules with a world of their own define their own ``world`` / ``client`` fixtures. The
import is inside the fixture so that a missing fastapi skips the modules (importorskip), not
the whole folder."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_clip):
    from serve_support import build_world

    return build_world(tmp_path_factory.mktemp("serve"), tiny_clip)


@pytest.fixture(scope="module")
def client(world):
    return world.client
