"""`python -m align_operator.nodeagent`: run the node agent (see align_operator.sandbox.nodeagent)."""

from .sandbox.nodeagent import main

if __name__ == "__main__":
    main()
