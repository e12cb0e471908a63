"""Choosing a weighting: unknown names and options, configurations that cannot differ from ``equal`` (refused, also as
config errors), and the step's other terms every method back-propagates."""


import pytest
import torch
from weighting_cases import BASE, GRADIENT_METHODS, TASKS, linear_losses

from auxnas.config.validate import validate
from auxnas.weighting import WEIGHTING_NAMES, WEIGHTINGS, build_weighting


def test_unknown_names_and_options():
    with pytest.raises(ValueError, match="unknown method 'nash'; valid: equal, uncertainty, dwa, gradnorm"):
        build_weighting("nash", TASKS, "p")
    with pytest.raises(ValueError, match="weighting.options.temp: not an option of dwa; valid: temperature"):
        build_weighting("dwa", TASKS, "p", temp=2.0)
    with pytest.raises(ValueError, match="not an option of pcgrad_aux; valid: none"):
        build_weighting("pcgrad_aux", TASKS, "p", seed=1)
    with pytest.raises(ValueError, match="granularity"):
        build_weighting("gcs", TASKS, "p", granularity="layer")
    with pytest.raises(ValueError, match="not among"):
        build_weighting("equal", TASKS, "q")
    assert WEIGHTING_NAMES == ("equal", "uncertainty", "dwa", "gradnorm", "pcgrad", "pcgrad_aux", "cagrad", "gcs",
                               "auto_lambda", "auxilearn")


@pytest.mark.parametrize("name, tasks, options, reason", [
    *[(n, ["p"], {}, "with a single task .* can only equal 'equal'") for n in WEIGHTING_NAMES if n != "equal"],
    ("dwa", ["p"], {"fix_primary": False}, "with a single task"),
    ("uncertainty", ["p"], {"fix_primary": False}, "with a single task only learns a rescaling of its loss"),
    ("dwa", TASKS, {}, "with fix_primary=true and one auxiliary task always gives weight 1 .*use fix_primary: false"),
    ("cagrad", TASKS, {"c": 0.0}, "with c=0 is the plain sum"),
])
def test_degenerate_configurations_are_refused(name, tasks, options, reason):
    with pytest.raises(ValueError, match=f"^weighting: {name} {reason}"):
        build_weighting(name, tasks, "p", **options)


def test_configurations_that_can_differ_from_equal_are_accepted():
    accepted = [
        ("equal", ["p"], {}),  # never refused
        ("dwa", TASKS, {"fix_primary": False}),
        ("dwa", ["p", "a", "b"], {}),
        ("cagrad", TASKS, {"c": 0.1}),
        *[(name, TASKS, {}) for name in ("uncertainty", "gradnorm", *GRADIENT_METHODS)],
    ]
    for name, tasks, options in accepted:
        method = build_weighting(name, tasks, "p", **options)
        assert type(method) is WEIGHTINGS[name] and method.degenerate_reason() is None, name
        assert (method.tasks, method.primary, method.aux) == (tasks, "p", tasks[1:]), name
    # the options that make them differ from equal are the ones taken
    assert build_weighting("dwa", TASKS, "p", fix_primary=False).weighted == TASKS  # the primary's weight adapts too
    assert build_weighting("dwa", ["p", "a", "b"], "p").weighted == ["a", "b"]  # two auxiliaries to balance
    assert build_weighting("cagrad", TASKS, "p", c=0.1).c == 0.1


def test_degenerate_configurations_are_config_errors():
    from auxnas.config import ConfigError, config_from_dict

    with pytest.raises(ConfigError, match="dwa with fix_primary=true and one auxiliary task"):
        validate(config_from_dict({"tasks": {"primary": "normal", "aux": ["seg"]}, "method": {"name": "aux_head"},
                                   "weighting": {"name": "dwa"}}))


@pytest.mark.parametrize("name", ["equal", "uncertainty", "gradnorm", "pcgrad", "uncertainty+pcgrad"])
def test_every_weighting_back_propagates_the_steps_other_terms_as_they_are(name):
    """The network step hands every method the step's terms outside the task losses (the model's extra loss,
    single-level's penalty) as ``extra``: the gradients are the method's own plus ``extra``'s, unweighted."""
    grads = []
    for with_extra in (False, True):
        shared, private, losses = linear_losses([1.0, 0.0], [0.5, 0.5], own=(1.0, 2.0))
        extra = (3.0 * shared.sum() + 2.0 * private.sum()) if with_extra else None
        build_weighting(name, TASKS, "p").backward(losses, [shared], BASE, shared, extra=extra)
        grads.append((shared.grad.clone(), private.grad.clone()))
    (shared0, private0), (shared1, private1) = grads
    assert torch.allclose(shared1, shared0 + 3.0) and torch.allclose(private1, private0 + 2.0)
