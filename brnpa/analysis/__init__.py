"""What processResults.py does with the saved files: reading the sets, the statistics, the tables, the plots
and the HTML report (report/)."""
