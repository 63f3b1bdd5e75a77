"""Distiller stage: one class per method, all driven by the same training engine, and the method registry."""

from ..lazy import exports

__all__, __getattr__ = exports(
    __name__,
    {
        "base": "Distiller",
        "methods": "DKD CEPlusKD CrossEntropy LabelSmoothing SoftCrossEntropy SoftTargetKD",
        "params": "NoParams ParamInfo Params Range param",
        "registry": (
            "DISTILLERS LEARNED LOSS_FORMS NO_SOURCE OWN_TABLE SAME_SEED_CE SOFT_LABELS TARGET_SOURCES TEACHER "
            "BuildContext LossForm Method SourceKind TargetSource baseline_method build_distiller combination "
            "cost_reference_method default_methods get_method method_choices method_names method_params "
            "methods_table network_sourced_methods parameter_fields parameter_help parameter_types "
            "register_loss_form register_method register_preset register_source resolve_source "
            "restructures_soft_labels tuning_grid unregister_method"
        ),
    },
    first="methods",
)
