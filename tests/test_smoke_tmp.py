import pytest
pytestmark = pytest.mark.anyio
async def test_health(client):
    r = await client.get("/health")
    assert r.status_code == 200, r.text
