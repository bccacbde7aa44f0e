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
    "member_joined_channel",
    "member_left_channel",
    "team_join",
)
ACCESS_APPROVE = "concierge_access_approve"  # buttons on an access request sent to its owner
ACCESS_DENY = "concierge_access_deny"
ACCESS_GRANT_CONFIRM = "concierge_access_grant_confirm"  # "Grant anyway" after warnings
# Human review of held drafts, and the owners' queue of voted-down answers.
REVIEW_APPROVE = "concierge_review_approve"
REVIEW_EDIT = "concierge_review_edit"
REVIEW_REJECT = "concierge_review_reject"
REVIEW_VERIFY = "concierge_review_verify"  # write a verified answer after a thumbs-down
REVIEW_DISMISS = "concierge_review_dismiss"
REVIEW_EDIT_MODAL = "concierge_review_edit_modal"
REVIEW_REJECT_MODAL = "concierge_review_reject_modal"
REVIEW_VERIFY_MODAL = "concierge_review_verify_modal"
REVIEW_TEXT_BLOCK = "review_text"
REVIEW_TEXT_ACTION = "review_text_input"
ACTION_IDS = (
    FEEDBACK_ACTION,
    ACCESS_APPROVE,
    ACCESS_DENY,
    ACCESS_GRANT_CONFIRM,
    REVIEW_APPROVE,
    REVIEW_EDIT,
    REVIEW_REJECT,
    REVIEW_VERIFY,
    REVIEW_DISMISS,
)
CALLBACK_IDS = (FEEDBACK_MODAL, REVIEW_EDIT_MODAL, REVIEW_REJECT_MODAL, REVIEW_VERIFY_MODAL)
