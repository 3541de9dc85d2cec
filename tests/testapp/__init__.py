"""A minimal installed app whose ``workflows`` module the app must autodiscover."""
