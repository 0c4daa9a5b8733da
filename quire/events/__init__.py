"""The append-only event table: live stream source and transactional outbox in one."""
