"""Command names, action ids and callback ids, in one place; manifest.yml must agree
(tests/test_slack_manifest.py checks it)."""

COMMAND = "/concierge"
FEEDBACK_ACTION = "concierge_feedback"  # the feedback_buttons element on every answer
FEEDBACK_MODAL = "concierge_feedback_reason"  # the thumbs-down reason modal
FEEDBACK_CATEGORY_BLOCK = "category"
FEEDBACK_CATEGORY_ACTION = "category_select"
FEEDBACK_TEXT_BLOCK = "details"
FEEDBACK_TEXT_ACTION = "details_input"

# Events the app subscribes to (bot events in manifest.yml).
BOT_EVENTS = (
    "app_mention",
    "message.im",
    "assistant_thread_started",
    "assistant_thread_context_changed",
    "user_change",
    "subteam_members_changed",
)
ACCESS_APPROVE = "concierge_access_approve"  # buttons on an access request sent to its owner
ACCESS_DENY = "concierge_access_deny"
ACTION_IDS = (FEEDBACK_ACTION, ACCESS_APPROVE, ACCESS_DENY)
CALLBACK_IDS = (FEEDBACK_MODAL,)
