"""Static verification of the deploy artefacts: the Helm chart and the Dockerfiles.

Run as ``.venv-deploy/bin/python -m tools.chart_check`` (``make chart``). It needs the
tools in ``requirements/deploy.txt`` (``make deploy-setup``): helm-python-sdk (Helm's Go
SDK, offline), kubernetes-validate (Kubernetes JSON schemas, offline), checkov and hadolint.
"""
