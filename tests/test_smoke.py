from tests.conftest import AGENT, Client_


async def test_create_start_and_gate(client: Client_) -> None:
    await client.setup_thread()
    await client.ok("session.create", thread_id="thd_t1", session_id="ses_a", owner=AGENT)
    await client.ok("session.start", session_id="ses_a")
    reply = await client.cmd("thread.archive", thread_id="thd_t1")
    assert reply["error"]["code"] == "thread_not_empty"
