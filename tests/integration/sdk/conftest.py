from __future__ import annotations

import pytest
from tests.integration.sdk.sdk_support import SdkTeam, build_sdk_team
from tests.support.platform import ServerThread

from labelvault.platform import Platform


@pytest.fixture
async def sdk_team(platform: Platform, server: ServerThread) -> SdkTeam:
    return await build_sdk_team(platform, server)
