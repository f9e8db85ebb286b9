# What the slixmpp client scripts share: polling for a condition inside asyncio.


import asyncio


async def wait_for(check, seconds=10):
    """Polls check() every 50 ms; True once it holds, False after `seconds`."""
    for _ in range(int(seconds * 20)):
        if check():
            return True
        await asyncio.sleep(0.05)
    return False
