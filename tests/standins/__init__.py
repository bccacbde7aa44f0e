"""The stand-ins live in ``support/standins`` (the benchmarks use them too). The old module
names stay importable so that tests keep reading ``tests.standins.slack_api``."""

import sys

from support.standins import openai_api, slack_api, tcp_proxy

for _module in (openai_api, slack_api, tcp_proxy):
    sys.modules[f"{__name__}.{_module.__name__.rsplit('.', 1)[1]}"] = _module
