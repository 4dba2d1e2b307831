"""pipework as a CNI plugin (``pipework-cni``): see docs/CNI.md.

``protocol`` (versions, error codes), ``config`` (the environment and the
network configuration), ``result`` (result formats), ``ipam`` (delegated
IPAM plugins), ``commands`` (ADD, DEL, CHECK, STATUS, GC through the
engine) and ``main`` (the entry point).
"""
