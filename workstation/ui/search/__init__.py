"""The Query/Retrieve tab: the search form, the search itself, the results and series tables,
and the banner for a node that did not answer."""
