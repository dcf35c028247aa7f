"""``qmroct bench replay``: scripted researcher and radiologist sessions in headless Chromium
against the web view, under LAN, VPN and WAN network profiles, with a capacity factor."""
