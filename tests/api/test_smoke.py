from tests.support.world import publish_order


async def test_a_published_order_can_be_claimed(client, world):
    order = await publish_order(client, world.manager)
    response = await client.post(f"/orders/{order['id']}/claim", headers=world.specialist.auth)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "claimed"
