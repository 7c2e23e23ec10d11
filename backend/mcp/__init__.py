"""The MCP server at /mcp: agents search, ask and read creators through the chat's own admission and turn path."""
