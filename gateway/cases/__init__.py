"""Cases and teams: the legitimate relationship between a staff member and a child."""
