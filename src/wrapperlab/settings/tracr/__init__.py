"""The Tracr setting: RASP programs compiled to transformer weights (Counter, Max-identifier), converted to our
GPT and fine-tuned (the paper's §4.1, App. C). Only compilation needs JAX. :data:`SETTING` is the registry's."""

from wrapperlab.settings.base import Setting
from wrapperlab.settings.tracr import nodes, stages

SETTING = Setting(
    name="tracr",
    run_kinds=("tracr-compile", *stages.TUNED_KINDS),
    lr_names=stages.TRACR_LRS,
    axes=nodes.AXES,
    optional_axes=("noise_std",),
    stages=nodes.STAGES,
    analyses=nodes.ANALYSES,
    expand=nodes.expand,
    load_model=nodes.load_model,
    versions=stages.VERSIONS,
    report_section="wrapperlab.report.sections.tracr:tracr_section",
    spec_options=nodes.TracrSpecOptions,
)
