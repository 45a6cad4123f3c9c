"""Benchmark harness: Java MultiLangDaemon 2.5.8 vs multilangd on local emulators."""
