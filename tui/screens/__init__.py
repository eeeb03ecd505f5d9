"""The console's dialogs: alert detail, note, silence, device group, error, help."""
