"""The Kubernetes side, over the shared engine.

api         the few API calls the operator makes (kubernetes client)
builders    pure builders of worker pods, trial Services, NetworkPolicies and the TuningJob status
backend     KubernetesBackend: trials as pods (the engine's Backend); only what the job's uid owns
controller  one TuningJob in the cluster: the engine's driver with this backend
handlers    the kopf handlers (thin: each calls the controller)
leader      leader election of the operator's replicas on a Lease (one drives, the others stand by)
telemetry   the operator's own Prometheus metrics
"""
