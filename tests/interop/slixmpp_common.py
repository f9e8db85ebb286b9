# What the slixmpp client scripts share: polling for a condition inside asyncio.


import asyncio


async def wait_for(check, seconds=10):
    """Polls check() every 50 ms; True once it holds, False after `seconds`."""
    for _ in range(int(seconds * 20)):
        if check():
            return True
        await asyncio.sleep(0.05)
    return False


def run_scenario(scenario, seconds=60):
    """Runs scenario() and prints its result as one JSON line (an error as {"error": ...})."""
    import json

    try:
        result = asyncio.get_event_loop().run_until_complete(
            asyncio.wait_for(scenario(), seconds)
        )
    except Exception as error:  # noqa: BLE001 - reported to the test as JSON
        result = {"error": f"{type(error).__name__}: {error}"}
    print(json.dumps(result), flush=True)
