"""shelfcast: fresh, small and trustworthy next-day demand forecasts for in-store edge devices."""

__version__ = "0.1.0"
