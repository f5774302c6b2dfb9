"""iotrace.workloads"""
