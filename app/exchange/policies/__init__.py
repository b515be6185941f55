"""A book's asset policies: storage cap, yearly gift cap, relationships a gift may name."""
