"""The Slack-free question pipeline: identity -> limits -> access -> retrieve -> prompt ->
generate -> emit -> record. Nothing here imports slack_bolt or slack_sdk."""
