import pytest
@pytest.mark.django_db(transaction=True)
def test_prof():
    import sys; sys.path.insert(0, "/tmp")
    import prof_ingest; prof_ingest.run()
