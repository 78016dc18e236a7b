"""The Queue tab: the retrieve and send jobs, their progress and their actions."""
