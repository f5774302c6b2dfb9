"""iotrace.tracer"""
