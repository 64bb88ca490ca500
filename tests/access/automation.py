"""Who may open the automation pages (rules, matrices, ad-hoc actions, event processing)."""

from core.roles import ADMIN, MARKETER

RULES = {MARKETER, ADMIN}


def _rule():
    from tests.automation.factories import make_rule

    return {"rule_id": make_rule().pk}


def _matrix():
    from automation.models import SegmentationMatrix

    matrix = SegmentationMatrix.objects.create(name="m", event_type="product_view", property="category",
                                               rows=[{"value": "a", "tag": "A", "score": 1}])
    return {"matrix_id": matrix.pk}


ACCESS = {
    "automation:rules": {"roles": RULES},
    "automation:rule_new": {"roles": RULES},
    "automation:rules_install_starter": {"roles": RULES, "method": "post"},
    "automation:rule_summary": {"roles": RULES, "method": "post"},
    "automation:rule_preview": {"roles": RULES, "method": "post"},
    "automation:rule_condition_row": {"roles": RULES},
    "automation:rule_action_row": {"roles": RULES},
    "automation:rule_edit": {"roles": RULES, "kwargs": _rule},
    "automation:rule_toggle": {"roles": RULES, "method": "post", "kwargs": _rule},
    "automation:rule_delete": {"roles": RULES, "method": "post", "kwargs": _rule},
    "automation:rule_run": {"roles": RULES, "method": "post", "kwargs": _rule},
    "automation:changes": {"roles": RULES},
    "automation:matrices": {"roles": RULES},
    "automation:matrix_new": {"roles": RULES},
    "automation:matrix_row": {"roles": RULES},
    "automation:matrix_edit": {"roles": RULES, "kwargs": _matrix},
    "automation:matrix_delete": {"roles": RULES, "method": "post", "kwargs": _matrix},
    "automation:adhoc": {"roles": RULES},
    "automation:events": {"roles": RULES},
    "automation:events_retry": {"roles": RULES, "method": "post"},
}
