"""iotrace.tui"""
