"""What every stage shares: errors, system info, chat families, naming. Imports nothing heavy."""
