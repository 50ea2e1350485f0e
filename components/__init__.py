"""Where the dynamic resources' providers were before the program became the timemachine/ package.

Pulumi keeps each dynamic resource's provider in the stack's state as a pickle that names its class
by module path (`__provider`), and deletes, refreshes and re-plans the resource with the one stored
there; a resource's stored provider changes only when the resource itself is created or updated. A
stack deployed before that change names these modules (found here because the provider runs in the
project folder); each gives its old class name to the current provider. Without them such a stack
could not refresh, destroy, remove a share or replace a container (docs/operations.md, Upgrades).
A provider class moved or renamed later needs the same: its old module path and name kept working.
"""
