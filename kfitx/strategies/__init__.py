"""The built-in strategies. Each module is a pluggy plugin like any third-party one."""
