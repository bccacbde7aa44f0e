"""The Slack adapter: the only package that imports slack_bolt or slack_sdk.

It verifies and acknowledges Slack's requests, de-duplicates them, turns them into the
pipeline's Questions, streams answers back and records feedback. Everything runs on one
asyncio event loop (Bolt's AsyncApp); database work goes through threads.
"""
